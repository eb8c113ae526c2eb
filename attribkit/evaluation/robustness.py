"""Robustness metrics named as Quantus names them, batched.

These re-explain: ``data.explain(model, inputs, targets) -> (B, H, W)`` is called
on stacks of perturbed copies (``nr_samples`` per image) ``batch_size`` rows at a
time, so a batch's ``B * nr_samples`` explanations take
``ceil(B * nr_samples / batch_size)`` calls, not ``B * nr_samples``.

Notation: ``a = Φ(x)`` the preprocessed relevance of image ``x``, ``x'`` a perturbed
copy, ``a' = Φ(x')``; norms are over all pixels (and channels) of one image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attribkit.evaluation.base import MetricInput, MetricResult, require_explain
from attribkit.evaluation.rows import (
    baseline_values,
    generator_for,
    preprocess,
)

Noise = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _explain_rows(data: MetricInput, per_image: int, build: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Explain ``B * per_image`` inputs made by ``build(image, step)``, in chunks of
    ``batch_size`` rows; returns ``(inputs (B, S, C, H, W), relevance (B, S, h, w))``."""
    b = len(data.targets)
    n = b * per_image
    xs, rels = [], []
    for start in range(0, n, data.batch_size):
        rows = torch.arange(start, min(start + data.batch_size, n), device=data.targets.device)
        i, k = rows // per_image, rows % per_image
        x = build(i, k)
        xs.append(x)
        rels.append(data.explain(model if model is not None else data.model, x, data.targets[i]).detach())
    x = torch.cat(xs)
    rel = torch.cat(rels)
    return x.view(b, per_image, *x.shape[1:]), rel.view(b, per_image, *rel.shape[1:])


def _preprocess_stack(rel: torch.Tensor, abs: bool, normalise: bool, per_image: bool) -> torch.Tensor:
    """Preprocess ``(B, S, h, w)`` maps: per map, or (Quantus) by the largest map of each
    step ``s`` over the batch, as Quantus normalises every explained batch."""
    if per_image:
        b, s = rel.shape[:2]
        return preprocess(rel.flatten(0, 1), abs=abs, normalise=normalise).view(rel.shape)
    return torch.stack([preprocess(rel[:, j], abs=abs, normalise=normalise, per_image=False)
                        for j in range(rel.shape[1])], 1)


def _changed(data: MetricInput, x_perturbed: torch.Tensor) -> torch.Tensor:
    """``(B, S)``: whether the predicted class of ``x'`` differs from that of ``x``."""
    b, s = x_perturbed.shape[:2]
    with torch.no_grad():
        before = torch.as_tensor(data.predict(data.inputs)).argmax(1)
        after = torch.cat([torch.as_tensor(data.predict(chunk)).argmax(1)
                           for chunk in x_perturbed.flatten(0, 1).split(data.batch_size)])
    return after.view(b, s) != before[:, None]


def _noisy(data: MetricInput, nr_samples: int, noise: Noise, seed: int,
           abs: bool, normalise: bool, per_image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = data.inputs
    gen = generator_for(seed)
    draws = noise(torch.Size((len(x), nr_samples, *x.shape[1:])), gen).to(x.device, x.dtype)
    xp, rel = _explain_rows(data, nr_samples, lambda i, k: x[i] + draws[i, k])
    return xp, _preprocess_stack(rel, abs, normalise, per_image)


def _norm(t: torch.Tensor, dims: int) -> torch.Tensor:
    return t.flatten(-dims).norm(dim=-1)


def _reduce(values: torch.Tensor, changed: torch.Tensor | None, how: str, nan_propagates: bool) -> torch.Tensor:
    if changed is not None:
        values = torch.where(changed, torch.full_like(values, float("nan")), values)
    if how == "max":
        if nan_propagates:
            return values.max(1).values
        filled = torch.where(values.isnan(), torch.full_like(values, -torch.inf), values)
        out = filled.max(1).values
        return torch.where(torch.isinf(out), torch.full_like(out, float("nan")), out)
    return values.mean(1) if nan_propagates else values.nanmean(1)


def _uniform(low: float, high: float) -> Noise:
    return lambda shape, gen: low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------- robustness

def local_lipschitz_estimate(data: MetricInput, *, nr_samples: int = 200, perturb_mean: float = 0.0,
                             perturb_std: float = 0.1, abs: bool = False, normalise: bool = True,
                             return_nan_when_prediction_changes: bool = False, seed: int = 0,
                             quantus_compat: bool = False) -> MetricResult:
    """Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018, "On the Robustness of
    Interpretability Methods", ICML workshop, arXiv:1806.08049):
    ``max_{x' = x + N(mean, std^2)} ||a - a'||_2 / (||x - x'||_2 + 1e-10)`` over
    ``nr_samples`` draws. Lower is better. ``return_nan_when_prediction_changes``
    ignores draws that change the predicted class (NaN if all do).
    ``quantus_compat`` normalises the maps by the batch's largest, as Quantus does.
    """
    require_explain(data)
    x = data.inputs
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat)
    xp, ap = _noisy(data, nr_samples, lambda s, g: perturb_mean + perturb_std * torch.randn(s, generator=g,
                    dtype=torch.float64), seed, abs, normalise, not quantus_compat)
    ratio = _norm(a[:, None] - ap, 2) / (_norm((x[:, None] - xp).double(), 3) + 1e-10)
    changed = _changed(data, xp) if return_nan_when_prediction_changes else None
    return MetricResult(_reduce(ratio, changed, "max", False).float())


def _sensitivity(data: MetricInput, how: str, nr_samples: int, lower_bound: float, upper_bound: float | None,
                 abs: bool, normalise: bool, return_nan: bool, seed: int) -> MetricResult:
    require_explain(data)
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
    xp, ap = _noisy(data, nr_samples, _uniform(low, high), seed, abs, normalise, True)
    ratio = _norm(a[:, None] - ap, 2) / _norm(a, 2)[:, None]
    changed = _changed(data, xp) if return_nan else None
    return MetricResult(_reduce(ratio, changed, how, False).float())


def max_sensitivity(data: MetricInput, *, nr_samples: int = 200, lower_bound: float = 0.2,
                    upper_bound: float | None = None, abs: bool = False, normalise: bool = False,
                    return_nan_when_prediction_changes: bool = False, seed: int = 0) -> MetricResult:
    """Max-sensitivity (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS): ``max_{x'} ||a - a'||_2 / ||a||_2`` over ``nr_samples``
    draws ``x' = x + U(-lower_bound, lower_bound)`` (``U(lower_bound, upper_bound)``
    when ``upper_bound`` is set), as Quantus (the paper's sensitivity is not divided
    by ``||a||``). Lower is better."""
    return _sensitivity(data, "max", nr_samples, lower_bound, upper_bound, abs, normalise,
                        return_nan_when_prediction_changes, seed)


def avg_sensitivity(data: MetricInput, *, nr_samples: int = 200, lower_bound: float = 0.2,
                    upper_bound: float | None = None, abs: bool = False, normalise: bool = False,
                    return_nan_when_prediction_changes: bool = False, seed: int = 0) -> MetricResult:
    """Average sensitivity (Yeh et al. 2019, NeurIPS): the mean over the draws of
    ``||a - a'||_2 / ||a||_2`` (see :func:`max_sensitivity`). Lower is better."""
    return _sensitivity(data, "mean", nr_samples, lower_bound, upper_bound, abs, normalise,
                        return_nan_when_prediction_changes, seed)


def translate_x(images: torch.Tensor, shift: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Shift ``(n, C, H, W)`` images by ``shift`` (``(n,)``) pixels along the width
    (positive: to the right), the uncovered columns taking ``fill``."""
    w = images.shape[-1]
    cols = torch.arange(w, device=images.device)[None, :] - shift[:, None]  # source column
    inside = (cols >= 0) & (cols < w)
    index = cols.clamp(0, w - 1)[:, None, None, :].expand_as(images)
    moved = images.gather(3, index)
    return torch.where(inside[:, None, None, :], moved, fill)


def continuity(data: MetricInput, *, nr_steps: int = 28, perturb_baseline: str | float = "black",
               abs: bool = True, normalise: bool = True, return_nan_when_prediction_changes: bool = False,
               quantus_compat: bool = False) -> MetricResult:
    """Continuity (Montavon, Samek & Müller 2018, "Methods for Interpreting and
    Understanding Deep Neural Networks", Digital Signal Processing 73), as Quantus
    measures it: the image is translated along its width by ``-W + d, -W + 2d, ...``
    (``d = (2W + 1) // nr_steps``) pixels, uncovered columns taking the baseline;
    the score is ``max_t ||a - a_t||_1 / (||x - x_t||_2 + 1e-9)``. Lower is better.
    """
    require_explain(data)
    x = data.inputs
    b, c, h, w = x.shape
    d = (2 * w + 1) // nr_steps
    shifts = torch.tensor([-w + d * (j + 1) for j in range(nr_steps)], device=x.device)
    fill = baseline_values(x, perturb_baseline, generator_for(0))
    xp, rel = _explain_rows(data, nr_steps, lambda i, k: translate_x(x[i], shifts[k], fill[i]))
    ap = _preprocess_stack(rel, abs, normalise, not quantus_compat)
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat)
    l1 = (a[:, None] - ap).flatten(2).abs().sum(-1)
    ratio = l1 / (_norm((x[:, None] - xp).double(), 3) + 1e-9)
    if return_nan_when_prediction_changes:
        with torch.no_grad():
            pred = torch.cat([torch.as_tensor(data.predict(chunk)).argmax(1)
                              for chunk in xp.flatten(0, 1).split(data.batch_size)]).view(b, nr_steps)
        ratio = torch.where(pred != data.targets[:, None], torch.full_like(ratio, float("nan")), ratio)
    return MetricResult(ratio.max(1).values.float())


def _relative(change: torch.Tensor, base: torch.Tensor, eps: float) -> torch.Tensor:
    return change / (base + (base == 0).to(base.dtype) * eps)


def _stability(data: MetricInput, output: bool, nr_samples: int, lower_bound: float, upper_bound: float,
               abs: bool, normalise: bool, eps_min: float, return_nan: bool, seed: int,
               quantus_compat: bool) -> MetricResult:
    require_explain(data)
    x = data.inputs.double()
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    xp, ap = _noisy(data, nr_samples, _uniform(lower_bound, upper_bound), seed, abs, normalise, True)
    top = _norm(_relative(a[:, None] - ap, a[:, None], eps_min), 2)
    if output:
        with torch.no_grad():
            h0 = torch.as_tensor(data.predict(data.inputs)).double()
            hp = torch.cat([torch.as_tensor(data.predict(chunk)).double()
                            for chunk in xp.flatten(0, 1).split(data.batch_size)]).view(*xp.shape[:2], -1)
        bottom = (h0[:, None] - hp).norm(dim=-1)
    else:
        bottom = _norm(_relative(x[:, None] - xp.double(), x[:, None], eps_min), 3)
    bottom = bottom + (bottom == 0).double() * eps_min
    changed = _changed(data, xp) if return_nan else None
    return MetricResult(_reduce(top / bottom, changed, "max", quantus_compat).float())


def relative_input_stability(data: MetricInput, *, nr_samples: int = 200, lower_bound: float = 0.02,
                             upper_bound: float = 0.2, abs: bool = False, normalise: bool = False,
                             eps_min: float = 1e-6, return_nan_when_prediction_changes: bool = True,
                             seed: int = 0, quantus_compat: bool = False) -> MetricResult:
    """Relative input stability (Agarwal et al. 2022, "Rethinking Stability for
    Attribution-based Explanations", arXiv:2203.06877):
    ``max_{x'} ||(a - a') / a||_2 / max(||(x - x') / x||_2, eps_min)`` over draws
    ``x' = x + U(lower_bound, upper_bound)`` (zeros in a denominator replaced by
    ``eps_min``, as Quantus). The paper maximises over the ``x'`` that keep the
    predicted class: draws that change it are left out (NaN if all do); Quantus
    makes the image's score NaN as soon as one draw changes it
    (``quantus_compat=True``). Lower is better."""
    return _stability(data, False, nr_samples, lower_bound, upper_bound, abs, normalise, eps_min,
                      return_nan_when_prediction_changes, seed, quantus_compat)


def relative_output_stability(data: MetricInput, *, nr_samples: int = 200, lower_bound: float = 0.02,
                              upper_bound: float = 0.2, abs: bool = False, normalise: bool = False,
                              eps_min: float = 1e-6, return_nan_when_prediction_changes: bool = True,
                              seed: int = 0, quantus_compat: bool = False) -> MetricResult:
    """Relative output stability (Agarwal et al. 2022, arXiv:2203.06877): as
    :func:`relative_input_stability` with the denominator ``||h(x) - h(x')||_2`` over
    the model's outputs (logits). Lower is better."""
    return _stability(data, True, nr_samples, lower_bound, upper_bound, abs, normalise, eps_min,
                      return_nan_when_prediction_changes, seed, quantus_compat)
