"""Robustness metrics named as Quantus names them, batched.

Lipschitz estimate, max / avg sensitivity, continuity, the relative input, output and
representation stabilities, and consistency.

These re-explain: ``data.explain(model, inputs, targets) -> (B, H, W)`` is called
on stacks of perturbed copies (``nr_samples`` per image) ``batch_size`` rows at a
time, so a batch's ``B * nr_samples`` explanations take
``ceil(B * nr_samples / batch_size)`` calls, not ``B * nr_samples``.

Notation: ``a = Φ(x)`` the preprocessed relevance of image ``x``, ``x'`` a perturbed
copy, ``a' = Φ(x')``; norms are over all pixels (and channels) of one image.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from attribkit.evaluation.base import MetricInput, MetricResult, require_explain
from attribkit.evaluation.rows import (
    baseline_values,
    generator_for,
    preprocess,
)
from attribkit.evaluation.scoring import class_indices, class_scores, predicted_classes, take

Noise = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _explain_rows(data: MetricInput, per_image: int, build: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Explain ``B * per_image`` inputs made by ``build(image, step)``, in chunks of
    ``batch_size`` rows; returns ``(inputs (B, S, C, H, W), relevance (B, S, h, w))``."""
    b = len(data.inputs)
    n = b * per_image
    xs, rels = [], []
    for start in range(0, n, data.batch_size):
        rows = torch.arange(start, min(start + data.batch_size, n), device=data.inputs.device)
        i, k = rows // per_image, rows % per_image
        x = build(i, k)
        xs.append(x)
        rels.append(data.explain(model if model is not None else data.model, x, take(data.targets, i)).detach())
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
        before = predicted_classes(data.predict(data.inputs))
        after = torch.cat([predicted_classes(data.predict(chunk))
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
            pred = torch.cat([predicted_classes(data.predict(chunk))
                              for chunk in xp.flatten(0, 1).split(data.batch_size)]).view(b, nr_steps)
        classes = class_indices(data.targets, "continuity").to(pred.device)
        ratio = torch.where(pred != classes[:, None], torch.full_like(ratio, float("nan")), ratio)
    return MetricResult(ratio.max(1).values.float())


def _relative(change: torch.Tensor, base: torch.Tensor, eps: float) -> torch.Tensor:
    return change / (base + (base == 0).to(base.dtype) * eps)


def _stability(data: MetricInput, output: str, nr_samples: int, lower_bound: float, upper_bound: float,
               abs: bool, normalise: bool, eps_min: float, return_nan: bool, seed: int,
               quantus_compat: bool, layers: list[tuple[str, nn.Module]] | None = None) -> MetricResult:
    """The relative stabilities; ``output``: ``"input"`` (``x``), ``"output"`` (logits
    ``h(x)``) or ``"representation"`` (``L(x)``, the outputs of ``layers``, relative)."""
    require_explain(data)
    x = data.inputs.double()
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    xp, ap = _noisy(data, nr_samples, _uniform(lower_bound, upper_bound), seed, abs, normalise, True)
    top = _norm(_relative(a[:, None] - ap, a[:, None], eps_min), 2)
    changed = None
    if output == "output":
        with torch.no_grad():
            h0 = class_scores(data.predict(data.inputs)).double()
            hp = torch.cat([class_scores(data.predict(chunk)).double()
                            for chunk in xp.flatten(0, 1).split(data.batch_size)]).view(*xp.shape[:2], -1)
        bottom = (h0[:, None] - hp).norm(dim=-1)
        if return_nan:  # the same forwards give the predictions
            changed = hp.argmax(-1) != h0.argmax(1)[:, None]
    elif output == "representation":
        l0, logits0 = representations(data.model, data.inputs, layers, data.batch_size)

        def change(rep: torch.Tensor, first: int) -> torch.Tensor:  # ||(L(x) - L(x')) / L(x)|| per row
            ref = l0[torch.arange(first, first + len(rep), device=l0.device) // nr_samples]
            return _relative(ref - rep, ref, eps_min).norm(dim=-1)

        bottom, logits = representations(data.model, xp.flatten(0, 1), layers, data.batch_size, change)
        bottom = bottom.view(xp.shape[:2])
        if return_nan:  # the same forwards give the predictions
            changed = logits.argmax(1).view(xp.shape[:2]) != logits0.argmax(1)[:, None]
    else:
        bottom = _norm(_relative(x[:, None] - xp.double(), x[:, None], eps_min), 3)
    bottom = bottom + (bottom == 0).double() * eps_min
    if return_nan and changed is None:
        changed = _changed(data, xp)
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
    return _stability(data, "input", nr_samples, lower_bound, upper_bound, abs, normalise, eps_min,
                      return_nan_when_prediction_changes, seed, quantus_compat)


def relative_output_stability(data: MetricInput, *, nr_samples: int = 200, lower_bound: float = 0.02,
                              upper_bound: float = 0.2, abs: bool = False, normalise: bool = False,
                              eps_min: float = 1e-6, return_nan_when_prediction_changes: bool = True,
                              seed: int = 0, quantus_compat: bool = False) -> MetricResult:
    """Relative output stability (Agarwal et al. 2022, arXiv:2203.06877): as
    :func:`relative_input_stability` with the denominator ``||h(x) - h(x')||_2`` over
    the model's outputs (logits). Lower is better."""
    return _stability(data, "output", nr_samples, lower_bound, upper_bound, abs, normalise, eps_min,
                      return_nan_when_prediction_changes, seed, quantus_compat)


# ------------------------------------------------------- relative representation stability

def hidden_layers(model: nn.Module, layer_names: list[str] | None = None,
                  layer: nn.Module | str | None = None) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs whose outputs make the representation ``L(x)``.

    ``layer``: one module or dotted name; ``layer_names``: those modules; neither: every
    submodule except ``nn.Sequential`` containers (Quantus's default: all layers)."""
    named = dict(model.named_modules())
    if layer is not None:
        if isinstance(layer, nn.Module):
            found = [(n, m) for n, m in named.items() if m is layer]
            if not found:
                raise ValueError("layer is not a submodule of the model")
            return found[:1]
        layer_names = [layer]
    if layer_names is not None:
        missing = [n for n in layer_names if n not in named]
        if missing:
            raise ValueError(f"no layer named {', '.join(map(repr, missing))} in the model")
        return [(n, named[n]) for n in layer_names]
    return [(n, m) for n, m in named.items()
            if n and not isinstance(m, (nn.Sequential, type(model)))]


#: bytes of float64 representation rows held at once (the chunk shrinks below ``batch_size``
#: when a row is large: every layer's output of a 224 px image is megabytes)
REPRESENTATION_BYTES = 2**28


def representations(model: nn.Module, inputs: torch.Tensor, layers: list[tuple[str, nn.Module]],
                    batch_size: int, reduce: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, D)`` float64 concatenated flattened outputs of ``layers`` (captured with
    :class:`attribkit.torch.capture.LayerCapture`, hooks removed after each chunk) and
    the ``(N, classes)`` model outputs of the same forwards, at most ``batch_size`` rows
    at a time and :data:`REPRESENTATION_BYTES` of representations. With ``reduce(rows,
    first)`` each chunk's ``(n, D)`` rows (the first being row ``first``) are reduced as
    they come (to ``(n,)``, say) and only that is kept."""
    from attribkit.torch.capture import LayerCapture, tensor_output

    reps, outs = [], []
    start, rows = 0, 1  # one row first, to learn D
    with torch.no_grad():
        while start < len(inputs):
            chunk = inputs[start:start + rows]
            captures = [LayerCapture(m, n, check=tensor_output(n)) for n, m in layers]
            with contextlib.ExitStack() as stack:
                for cap in captures:
                    stack.enter_context(cap)
                outs.append(torch.as_tensor(model(chunk)).double())
            missing = [cap.name for cap in captures if cap.calls == 0]
            if missing:
                raise ValueError(f"layer(s) {', '.join(missing)} not called by the forward")
            rep = torch.cat([cap.output.reshape(len(chunk), -1).double() for cap in captures], 1)
            reps.append(rep if reduce is None else reduce(rep, start))
            start += len(chunk)
            rows = max(1, min(batch_size, REPRESENTATION_BYTES // (8 * rep.shape[1])))
    return torch.cat(reps), torch.cat(outs)


def relative_representation_stability(data: MetricInput, *, nr_samples: int = 200, lower_bound: float = 0.02,
                                      upper_bound: float = 0.2, abs: bool = False, normalise: bool = False,
                                      eps_min: float = 1e-6, layer_names: list[str] | None = None,
                                      layer: nn.Module | str | None = None,
                                      return_nan_when_prediction_changes: bool = True, seed: int = 0,
                                      quantus_compat: bool = False) -> MetricResult:
    """Relative representation stability (Agarwal et al. 2022, "Rethinking Stability for
    Attribution-based Explanations", arXiv:2203.06877):
    ``max_{x'} ||(a - a') / a||_2 / max(||(L(x) - L(x')) / L(x)||_2, eps_min)`` over draws
    ``x' = x + U(lower_bound, upper_bound)``, ``L(x)`` the model's internal representation:
    the outputs of ``layer`` (a module or dotted name) or of ``layer_names``, flattened
    and concatenated; by default, as Quantus, of every submodule but ``nn.Sequential``
    containers. Zeros in a denominator are replaced by ``eps_min``. The paper
    maximises over the ``x'`` that keep the predicted class (NaN if none does); Quantus
    makes the score NaN as soon as one draw changes it (``quantus_compat=True``).
    The representations are captured by forward hooks removed after each chunk; the
    model is not changed. Lower is better."""
    require_explain(data)
    layers = hidden_layers(data.model, layer_names, layer)
    return _stability(data, "representation", nr_samples, lower_bound, upper_bound, abs, normalise, eps_min,
                      return_nan_when_prediction_changes, seed, quantus_compat, layers)


# -------------------------------------------------------------------- consistency

def _discretise(a: torch.Tensor, how: str | Callable[[torch.Tensor], torch.Tensor], n: int,
                quantus_compat: bool) -> torch.Tensor:
    """``(B, K)`` keys of the flattened maps ``a`` (``(B, D)``); equal keys = equal explanation."""
    if callable(how):
        return torch.as_tensor(how(a)).reshape(len(a), -1).double()
    if how == "top_n_sign":
        if quantus_compat:  # Quantus: the signs of the first n elements, not of the top n
            return a[:, :n].sign()
        idx = a.abs().argsort(dim=1, descending=True, stable=True)[:, :n]
        return torch.cat([idx.double(), a.gather(1, idx).sign()], 1)
    if how == "sign":
        return a.sign()
    if how == "rank":
        return a.argsort(dim=1, stable=True).flip(1).double()
    if how == "floating_points":
        return torch.round(a * 10**n) / 10**n
    raise ValueError("discretise_func must be 'top_n_sign', 'sign', 'rank', 'floating_points' or a callable, "
                     f"got {how!r}")


def consistency(data: MetricInput, *, discretise_func: str | Callable[[torch.Tensor], torch.Tensor] = "top_n_sign",
                n: int = 5, abs: bool = True, normalise: bool = True, quantus_compat: bool = False) -> MetricResult:
    """Consistency (Dasgupta, Frost & Moshkovitz 2022, "Framework for Evaluating
    Faithfulness of Local Explanations", ICML): the probability that two inputs with
    the same (discretised) explanation get the same prediction,
    ``c_i = sum_{j != i} [e_j = e_i][f(x_j) = f(x_i)] / sum_{j != i} [e_j = e_i]`` over the
    batch (0 when no other image shares the explanation, as Quantus). Higher is better
    (Quantus 0.6 labels it lower-is-better).

    The explanation ``e`` is the preprocessed map discretised by ``discretise_func``:
    ``"top_n_sign"`` (default): the positions of the ``n`` largest ``|a|`` and their signs;
    ``"sign"``: every sign; ``"rank"``: the pixel order; ``"floating_points"``: values
    rounded to ``n`` decimals; or a callable ``(B, D) -> (B, K)`` keys. Quantus's
    ``top_n_sign`` takes the signs of the *first* ``n`` elements of the flattened map
    (``np.sign(a)[:n]``), not of the top ``n`` (``quantus_compat=True``). Depends on
    the batch by definition; needs only forwards.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat).flatten(1)
    keys = _discretise(a, discretise_func, n, quantus_compat)
    same_e = (keys[:, None, :] == keys[None, :, :]).all(-1)
    same_e &= ~torch.eye(len(a), dtype=torch.bool, device=a.device)
    with torch.no_grad():
        pred = torch.cat([predicted_classes(data.predict(chunk))
                          for chunk in data.inputs.split(data.batch_size)])
    same_y = pred[:, None] == pred[None, :]
    total = same_e.double().sum(1)
    agree = (same_e & same_y).double().sum(1)
    score = torch.where(total > 0, agree / total.clamp(min=1), torch.zeros_like(total))
    return MetricResult(score.float())
