"""Axiomatic metrics named as Quantus names them: completeness, non-sensitivity,
input invariance."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from attribkit.evaluation.base import MetricInput, MetricResult, require_explain
from attribkit.evaluation.defaults import step_size
from attribkit.evaluation.rows import (
    baseline_values,
    forward_scores,
    generator_for,
    preprocess,
    score_rows,
)
from attribkit.evaluation.scoring import split


def completeness(data: MetricInput, *, perturb_baseline: str | float = "black", abs: bool = False,
                 normalise: bool = False, softmax: bool = False, quantus_compat: bool = False) -> MetricResult:
    """Completeness (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for Deep
    Networks", ICML): the attributions should sum to the output difference from the
    baseline image. The score is the gap ``|sum_i a_i - (f(x) - f(x_b))|``; lower is
    better. ``normalise`` defaults to False here: rescaling the map makes the sum
    meaningless. Quantus returns ``sum_i a_i == f(x) - f(x_b)`` (exact float
    equality, after its batch-wide normalisation): ``quantus_compat=True``."""
    x = data.inputs
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat).flatten(1)
    fill = baseline_values(x, perturb_baseline, generator_for(0))
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    yb = forward_scores(data.predict, fill, data.targets, softmax=softmax, batch_size=data.batch_size)
    if quantus_compat:
        return MetricResult((a.sum(1) == (y0 - yb)).float())
    return MetricResult((a.sum(1) - (y0 - yb)).abs().float())


def non_sensitivity(data: MetricInput, *, eps: float = 1e-5, features_in_step: int | None = None,
                    perturb_baseline: str | float = "black", abs: bool = True, normalise: bool = True,
                    softmax: bool = True, quantus_compat: bool = False) -> MetricResult:
    """Non-sensitivity (Nguyen & Martínez 2020, "On Quantitative Aspects of Model
    Interpretability", arXiv:2007.07584): pixels are set to the baseline in groups of
    ``features_in_step`` (in pixel order), one group at a time; the score counts the
    groups where "no attribution" (every ``a_i < eps``) and "no effect"
    (``|f(x_{g->b}) - f(x)| < eps``) disagree. Lower is better. ``quantus_compat``
    normalises by the batch's largest map, as Quantus (which supports only
    ``features_in_step=1``)."""
    x = data.inputs
    b, c, h, w = x.shape
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat).flatten(1)
    features_in_step = step_size(features_in_step, h * w)
    n_steps = math.ceil(h * w / features_in_step)
    fill = baseline_values(x, perturb_baseline, generator_for(0))
    group = torch.arange(h * w, device=x.device) // features_in_step

    def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        chosen = (group[None, :] == k[:, None]).view(-1, 1, h, w)
        return torch.where(chosen, fill[i], x[i])

    y = score_rows(data.predict, n_steps, build, data.targets, softmax=softmax, batch_size=data.batch_size,
                   n_images=len(x))
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    no_effect = (y - y0[:, None]).abs() < eps
    below = (a < eps).double()
    no_attr = torch.zeros(b, n_steps, dtype=torch.float64, device=x.device).index_add_(1, group, below)
    no_attr = no_attr == torch.bincount(group, minlength=n_steps).double()[None, :]
    return MetricResult((no_effect ^ no_attr).sum(1).float())


def shift_first_layer(model: nn.Module, input_shift: float, *, quantus_compat: bool = False,
                      shape: tuple[int, ...] | None = None) -> nn.Module:
    """A copy of ``model`` whose first ``Conv2d`` / ``Linear`` absorbs a constant input
    shift: ``b' = b - input_shift * sum(W)`` per output, so that
    ``model'(x + shift) == model(x)`` (exactly for a linear layer or an unpadded
    convolution; at a padded convolution's border the zeros are not shifted).

    ``quantus_compat=True`` sets ``b' = 2b - min(response to a constant image of
    input_shift)`` per channel (``shape``: the image's), as Quantus does: equal in
    exact arithmetic for an unpadded layer, and rounded the same way as Quantus."""
    shifted = copy.deepcopy(model)
    for module in shifted.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                if module.bias is None:
                    module.bias = nn.Parameter(torch.zeros(module.weight.shape[0], dtype=module.weight.dtype,
                                                           device=module.weight.device))
                if quantus_compat:
                    delta = torch.full((1, *shape[1:]), float(input_shift), dtype=module.weight.dtype,
                                       device=module.weight.device)
                    response = module(delta)[0]
                    lowest = response.flatten(1).amin(1) if response.ndim > 1 else response
                    module.bias.copy_(2 * module.bias - lowest)
                else:
                    total = module.weight.sum(dim=tuple(range(1, module.weight.ndim)))
                    module.bias -= input_shift * total
            return shifted
    raise ValueError("input_invariance needs a model whose first layer is a Conv2d or Linear")


def input_invariance(data: MetricInput, *, input_shift: float = -1.0, abs: bool = False,
                     normalise: bool = False, quantus_compat: bool = False) -> MetricResult:
    """Input invariance (Kindermans et al. 2019, "The (Un)reliability of Saliency
    Methods", in Explainable AI, LNCS 11700): explain ``x + input_shift`` on a copy
    of the model whose first layer cancels the shift (:func:`shift_first_layer`);
    the score is 1 if the maps agree everywhere (``|a - a'| <= 1e-4 + 1e-5 |a'|``,
    Quantus's tolerance), else 0. Higher is better. Quantus adjusts the bias by
    the smallest value of the first layer's response to a constant image, which
    equals this only for an unpadded first layer, up to rounding (which can flip a
    ReLU whose input is within rounding of 0), and its shifted input keeps the
    first element of every image unshifted: ``quantus_compat=True`` does both."""
    require_explain(data)
    shifted = shift_first_layer(data.model, input_shift, quantus_compat=quantus_compat,
                                shape=tuple(data.inputs.shape))
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    xs = data.inputs + input_shift
    if quantus_compat:  # Quantus 0.6 leaves the first element of every image unshifted
        xs[:, 0, 0, 0] = data.inputs[:, 0, 0, 0]
    rel = torch.cat([data.explain(shifted, x, t).detach() for x, t in
                     zip(xs.split(data.batch_size), split(data.targets, len(xs), data.batch_size))])
    ap = preprocess(rel, abs=abs, normalise=normalise)
    close = (a - ap).abs() <= 1e-4 + 1e-5 * ap.abs()
    return MetricResult(close.flatten(1).all(1).float())
