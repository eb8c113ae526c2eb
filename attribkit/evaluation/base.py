"""What every metric takes and gives: :class:`MetricInput` and :class:`MetricResult`.

A metric is called as ``metric(data: MetricInput, **options) -> MetricResult``.
The input carries what any metric may need; each metric's spec says which
parts it needs (``forward``, ``ground_truth``, ``model``, ``method``), and
:func:`attribkit.evaluation.api.evaluate` or the bench runner fills in only what it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


@dataclasses.dataclass
class MetricInput:
    """What a metric gets.

    Attributes:
        predict: ``batch -> scores`` (a module or any callable).
        inputs: ``(B, C, H, W)`` images, in the space ``predict`` expects.
        relevance: ``(B, H, W)`` pixel relevance of the method being scored.
        targets: ``(B,)`` explained classes, or a target object of
            :mod:`attribkit.targets` bound to the ``B`` rows, or a callable
            ``raw_output -> (n,)``: how the metrics read scores
            (:mod:`attribkit.evaluation.scoring`).
        masks: ``(B, H, W)`` bool evidence masks, when ground truth exists.
        model: the ``nn.Module`` (for metrics that modify a copy of it).
        explain: ``(model, inputs, targets) -> (B, H, W)`` relevance of the same
            method on another model or target (for sanity checks).
        batch_size: rows per forward.
    """

    predict: Callable[[torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    relevance: torch.Tensor
    targets: Any
    masks: torch.Tensor | None = None
    model: nn.Module | None = None
    explain: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    batch_size: int = 256


@dataclasses.dataclass
class MetricResult:
    """One score per image, plus optional curves for plots (name -> list of floats)."""

    scores: torch.Tensor
    curves: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def require_explain(data: MetricInput) -> None:
    """Raise unless ``data`` can re-explain (a model and an explain function)."""
    if data.explain is None or data.model is None:
        raise ValueError("this metric re-explains: it needs the model and an explain function "
                         "(ak.evaluate(..., method=...) or the bench runner)")
