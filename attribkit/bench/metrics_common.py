"""Moved to :mod:`attribkit.evaluation.rows` (issue 22): this path warns and is removed in attribkit 0.2."""

from attribkit._moved import moved_module

__getattr__ = moved_module("attribkit.bench.metrics_common", "attribkit.evaluation.rows")
