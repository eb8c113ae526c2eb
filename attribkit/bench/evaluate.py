"""Moved to :mod:`attribkit.evaluation` (issue 22): this path warns and is removed in attribkit 0.2."""

from attribkit._moved import moved_module

__getattr__ = moved_module("attribkit.bench.evaluate", "attribkit.evaluation.base", "attribkit.evaluation.api",
                           "attribkit.evaluation.faithfulness", "attribkit.evaluation.localisation",
                           "attribkit.evaluation.randomisation")
