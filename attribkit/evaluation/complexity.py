"""Complexity metrics named as Quantus names them: they look at the relevance alone."""

from __future__ import annotations

import torch

from attribkit.evaluation.base import MetricInput, MetricResult
from attribkit.evaluation.rows import preprocess


def sparseness(data: MetricInput, *, abs: bool = True, normalise: bool = True) -> MetricResult:
    """Sparseness (Chalasani et al. 2020, "Concise Explanations of Neural Networks using
    Adversarial Training", ICML): the Gini index of ``a + 1e-7`` sorted ascending,
    ``sum_i (2i - n - 1) a_(i) / (n sum_i a_i)``. Higher is better (sparser)."""
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1) + 1e-7
    n = a.shape[1]
    a = a.sort(1).values
    i = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    return MetricResult((((2 * i - n - 1) * a).sum(1) / (n * a.sum(1))).float())


def complexity(data: MetricInput, *, abs: bool = True, normalise: bool = True) -> MetricResult:
    """Complexity (Bhatt, Weller & Moura 2020, "Evaluating and Aggregating Feature-based
    Model Explanations", IJCAI): the entropy of the fractional contributions
    ``p_i = a_i / sum_j |a_j|``, ``-sum_i p_i log(p_i + 1e-12)``. Lower is better."""
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)
    p = a / a.abs().sum(1, keepdim=True)
    return MetricResult((-(p * torch.log(p + 1e-12)).sum(1)).float())


def effective_complexity(data: MetricInput, *, eps: float = 1e-5, abs: bool = True,
                         normalise: bool = True, quantus_compat: bool = False) -> MetricResult:
    """Effective complexity (Nguyen & Martínez 2020, "On Quantitative Aspects of Model
    Interpretability", arXiv:2007.07584): the number of pixels with ``a_i > eps``.
    Lower is better. ``normalise`` divides each map by its own ``max |a|``; Quantus
    divides all maps passed by the largest of them (``quantus_compat=True``), so
    an image's count depends on the others."""
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat).flatten(1)
    return MetricResult((a > eps).sum(1).float())
