"""Moved to :mod:`attribkit.evaluation.faithfulness` (issue 22): this path warns and is removed in attribkit 0.2."""

from attribkit._moved import moved_module

__getattr__ = moved_module("attribkit.bench.metrics_faithfulness", "attribkit.evaluation.faithfulness",
                           "attribkit.evaluation.faithfulness_correlation", "attribkit.evaluation.rows")
