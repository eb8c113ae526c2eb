"""Moved to :mod:`attribkit.evaluation.robustness` (issue 22): this path warns and is removed in attribkit 0.2."""

from attribkit._moved import moved_module

__getattr__ = moved_module("attribkit.bench.metrics_robustness", "attribkit.evaluation.robustness",
                           "attribkit.evaluation.randomisation", "attribkit.evaluation.axiomatic",
                           "attribkit.evaluation.rows", "attribkit.evaluation.base")
