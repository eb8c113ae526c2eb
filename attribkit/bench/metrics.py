"""Moved to :mod:`attribkit.evaluation.functional` (issue 22): this path warns and is removed in attribkit 0.2."""

from attribkit._moved import moved_module

__getattr__ = moved_module("attribkit.bench.metrics", "attribkit.evaluation.functional", "attribkit.evaluation.rows")
