"""Shared pieces of the Quantus-named metrics: preprocessing, baselines and batched rows.

Every metric in ``attribkit.evaluation.<group>`` works on ``(B, H, W)`` pixel relevance
and ``(B, C, H, W)`` images. A *feature* is a pixel: perturbing it sets all its
channels (for one-channel images this is exactly Quantus's feature, an element
of the flattened input; for colour images Quantus broadcasts the map to every
channel and ranks the ``C*H*W`` elements one by one, which splits a pixel's
channels over different steps).

The perturbed inputs of a whole batch are described as *rows*: ``(image, step)``
pairs enumerated image-major, built a chunk of ``batch_size`` rows at a time
and scored by one model call per chunk (:func:`score_rows`). No metric loops
over images in Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from attribkit.evaluation import scoring
from attribkit.evaluation.base import MetricInput

Predict = Callable[[torch.Tensor], torch.Tensor]
BuildRows = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BASELINES = ("black", "white", "mean", "uniform")


def preprocess(relevance: torch.Tensor, *, abs: bool = False, normalise: bool = True,
               per_image: bool = True) -> torch.Tensor:
    """Quantus's attribution preprocessing: ``r / max|r|`` (``normalise_by_max``; an
    all-zero batch is left as it is), then ``|r|`` if ``abs``. Returns float64.

    ``per_image=True`` divides each map by its own maximum, so that an image's
    score never depends on the other images; Quantus's default divides the whole
    array of maps by its one largest value (``per_image=False``). The two differ
    only for metrics that are not scale-invariant (thresholds, sums compared with
    output differences)."""
    r = relevance.detach().double()
    if normalise and bool((r != 0).any()):
        if per_image:
            peak = r.abs().flatten(1).amax(1).view(-1, *([1] * (r.ndim - 1)))
            peak = torch.where(peak > 0, peak, torch.ones_like(peak))  # an all-zero map stays 0
        else:
            peak = r.abs().max()
        r = r / peak
    if abs:
        r = r.abs()
    return r


def baseline_values(images: torch.Tensor, perturb_baseline: str | float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, C, H, W)`` values that perturbed pixels take.

    ``"black"`` / ``"white"``: the image's minimum / maximum over all channels and
    pixels; ``"mean"``: its mean; ``"uniform"``: independent U(0, 1) draws per
    element; a number: that constant. Quantus computes these from the array
    being perturbed at each step; for black and white that is the same value,
    for ``"mean"`` Quantus's cumulative metrics drift as pixels are replaced,
    here the baseline is the original image's mean (the papers' reference value).
    """
    b = images.shape[0]
    flat = images.flatten(1)
    if isinstance(perturb_baseline, (int, float)) and not isinstance(perturb_baseline, bool):
        return torch.full_like(images, float(perturb_baseline))
    kind = str(perturb_baseline).lower()
    if kind == "black":
        value = flat.amin(1)
    elif kind == "white":
        value = flat.amax(1)
    elif kind == "mean":
        value = flat.mean(1)
    elif kind == "uniform":
        return torch.rand(images.shape, generator=generator, dtype=images.dtype,
                          device="cpu").to(images.device)
    else:
        raise ValueError(f"perturb_baseline must be a number or one of {', '.join(BASELINES)}, "
                         f"got {perturb_baseline!r}")
    return value.view(b, 1, 1, 1).expand_as(images).clone()


def compact_fill(fill: torch.Tensor) -> torch.Tensor:
    """``(B, 1, 1, 1)`` when every image's fill is one constant (black, white, mean, a
    number), so that building rows broadcasts it instead of copying it; else ``fill``."""
    first = fill.flatten(1)[:, :1]
    if bool((fill.flatten(1) == first).all()):
        return first.view(-1, 1, 1, 1)
    return fill


def compact_ranks(ranks: torch.Tensor) -> torch.Tensor:
    """Ranks as int32 (half the memory traffic of int64 when rows are built)."""
    return ranks.to(torch.int32) if ranks.shape[-1] < 2**31 else ranks


def generator_for(seed: int) -> torch.Generator:
    """A CPU generator (draws are moved to the device): the same numbers on any device."""
    return torch.Generator().manual_seed(int(seed))


def output_scores(scores: Any, targets: Any, softmax: bool, dtype: torch.dtype = torch.float64,
                  images: torch.Tensor | None = None) -> torch.Tensor:
    """The target's score per row of the raw output ``scores``, row ``k`` a copy of image
    ``images[k]`` (``None``: row ``k`` is image ``k``): for class targets its logit, or its
    softmax probability (in ``dtype``, float64 by default); for a target object or
    callable its score (:func:`attribkit.evaluation.scoring.target_scores`)."""
    return scoring.target_scores(scores, targets, images, softmax=softmax, dtype=dtype)


#: ``span(image, first, stop) -> (stop - first, C, H, W)``: rows ``first..stop-1`` of one image
BuildSpan = Callable[[int, int, int], torch.Tensor]


def score_rows(predict: Predict, per_image: int, build: BuildRows, targets: Any, *,
               softmax: bool, batch_size: int, return_logits: bool = False,
               build_span: BuildSpan | None = None, dtype: torch.dtype = torch.float64,
               n_images: int | None = None) -> torch.Tensor:
    """Score ``n_images * per_image`` perturbed inputs without holding them all in memory.

    Rows are ``(image, step)`` pairs, image-major. ``build(image, step)`` gets two
    ``(n,)`` index tensors and returns the ``(n, C, H, W)`` inputs of those rows;
    rows are built and scored ``batch_size`` at a time, one model call each.
    ``build_span(image, first, stop)``, when given, builds a chunk that lies within
    one image from plain integers instead (the usual chunk when ``batch_size <=
    per_image``: no index tensors, no gathers, no host sync).
    ``targets`` is per image: ``(B,)`` class indices, or a bound target object or
    callable (:mod:`attribkit.evaluation.scoring`; then ``n_images`` must be given, and
    each row is scored by the target as a copy of its image). Returns ``(B, per_image)``
    target scores (``dtype``), or the ``(B, per_image, classes)`` raw outputs with
    ``return_logits`` (class targets only).
    """
    classes = scoring.is_classes(targets)
    if n_images is None:
        if not classes:
            raise TypeError("score_rows: n_images is needed for a target object or callable")
        n_images = len(targets)
    n_rows = n_images * per_image
    device = targets.device if classes else None
    out: list[torch.Tensor] = []
    pending: list[tuple[Any, torch.Tensor]] = []  # raw outputs, scored together

    def flush() -> None:
        scores = torch.cat([p for p, _ in pending]) if len(pending) > 1 else pending[0][0]
        rows_images = torch.cat([i for _, i in pending]) if len(pending) > 1 else pending[0][1]
        out.append(output_scores(scores, targets, softmax, dtype, rows_images))
        pending.clear()

    held = 0
    with torch.no_grad():
        for start in range(0, n_rows, batch_size):
            stop = min(start + batch_size, n_rows)
            first = start // per_image
            if build_span is not None and first == (stop - 1) // per_image:
                offset = first * per_image
                batch = build_span(first, start - offset, stop - offset)
                image = torch.full((stop - start,), first, dtype=torch.long, device=device)
            else:
                rows = torch.arange(start, stop, device=device)
                image = rows // per_image
                batch = build(image, rows % per_image)
            scores = predict(batch)
            if return_logits:
                out.append(torch.as_tensor(scores).double())
                continue
            if not classes:  # a raw output (list of dicts, dict): scored at once
                out.append(output_scores(scores, targets, softmax, dtype, image))
                continue
            # softmax and selection are row-wise: done once per ~1M outputs, not per call
            pending.append((_class_tensor(scores), image))
            held += pending[-1][0].numel()
            if held >= 2**20:
                flush()
                held = 0
        if pending:
            flush()
    flat = torch.cat(out)
    return flat.view(n_images, per_image, *flat.shape[1:])


def _class_tensor(scores: Any) -> torch.Tensor:
    """The ``(n, classes)`` scores of a classifier's raw output (a tensor, a dict with
    ``logits``, a tuple)."""
    from attribkit.targets.classes import class_scores

    return class_scores(torch.as_tensor(scores) if isinstance(scores, np.ndarray) else scores)


def forward_scores(predict: Predict, images: torch.Tensor, targets: Any, *,
                   softmax: bool, batch_size: int) -> torch.Tensor:
    """``(B,)`` target scores of the unperturbed images."""
    return score_rows(predict, 1, lambda i, s: images[i], targets, softmax=softmax,
                      batch_size=batch_size, n_images=len(images))[:, 0]


def descending_ranks(relevance: torch.Tensor) -> torch.Tensor:
    """``(B, H*W)`` rank of each pixel, 0 = most relevant (ties: the first pixel first)."""
    flat = relevance.flatten(1)
    order = flat.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def ascending_ranks(relevance: torch.Tensor) -> torch.Tensor:
    """``(B, H*W)`` rank of each pixel, 0 = least relevant."""
    return descending_ranks(-relevance)


def block_ids(h: int, w: int, patch_size: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Patch index of every pixel (``(H*W,)``) and the number of patches.

    Patches tile the image padded to a multiple of ``patch_size``, the padding
    split evenly (the larger half after the image), as Quantus's region
    perturbation and selectivity do; patch ids run row-major over the tiling.
    """
    def offsets(dim: int) -> tuple[int, int]:
        rest = dim % patch_size
        return (0, math.ceil(dim / patch_size)) if rest == 0 else \
            ((patch_size - rest) // 2, math.ceil(dim / patch_size))

    top, rows = offsets(h)
    left, cols = offsets(w)
    yy = (torch.arange(h, device=device) + top) // patch_size
    xx = (torch.arange(w, device=device) + left) // patch_size
    return (yy[:, None] * cols + xx[None, :]).flatten(), rows * cols


def block_sums(relevance: torch.Tensor, ids: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """``(B, n_blocks)`` sum of the relevance in each patch."""
    flat = relevance.flatten(1)
    return torch.zeros(flat.shape[0], n_blocks, dtype=flat.dtype, device=flat.device).index_add_(
        1, ids, flat)


def trapezoid(curves: torch.Tensor, dx: float = 1.0) -> torch.Tensor:
    """Composite trapezoid rule along the last axis (``np.trapezoid(curves, dx=dx)``)."""
    if curves.shape[-1] < 2:
        return torch.zeros(curves.shape[:-1], dtype=curves.dtype, device=curves.device)
    return dx * (curves[..., 1:] + curves[..., :-1]).sum(-1) / 2


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis (float64; NaN where a side is constant,
    as ``scipy.stats.pearsonr``)."""
    a = a.double() - a.double().mean(-1, keepdim=True)
    b = b.double() - b.double().mean(-1, keepdim=True)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks along the last axis, ties sharing their mean rank (``scipy.stats.rankdata``)."""
    shape = x.shape
    x = x.reshape(-1, shape[-1]).double()
    order = x.argsort(dim=1, stable=True)
    sorted_x = x.gather(1, order)
    positions = torch.arange(shape[-1], device=x.device, dtype=x.dtype).expand_as(x)
    new_run = torch.ones_like(sorted_x, dtype=torch.bool)
    new_run[:, 1:] = sorted_x[:, 1:] != sorted_x[:, :-1]
    run_id = new_run.long().cumsum(1) - 1
    sums = torch.zeros_like(sorted_x).scatter_add_(1, run_id, positions)
    counts = torch.zeros_like(sorted_x).scatter_add_(1, run_id, torch.ones_like(positions))
    mean_pos = (sums / counts.clamp(min=1)).gather(1, run_id)
    ranks = torch.empty_like(x)
    ranks.scatter_(1, order, mean_pos)
    return ranks.view(shape)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation along the last axis (NaN where a side is constant)."""
    return pearson(average_ranks(a), average_ranks(b))


# ------------------------------------------------------- rows shared by the curve metrics

def mean_curve(curves: torch.Tensor) -> dict[str, list[float]]:
    return {"x": list(range(1, curves.shape[1] + 1)), "mean": curves.float().nanmean(0).tolist()}


def removal_weights(ranks: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``(n, HW)`` float32: 1 where ``rank < threshold`` (the pixel is replaced), else 0,
    for ``ranks`` ``(n or 1, HW)`` and ``thresholds`` ``(n,)`` (both float32, whole
    numbers): ``clamp(threshold - rank, 0, 1)``, two vectorised passes (a bool mask and
    ``torch.where`` cost several times more on CPUs)."""
    return (thresholds[:, None] - ranks).clamp_(0, 1)


def threshold_scores(predict: Predict, x: torch.Tensor, ranks: torch.Tensor, thresholds: torch.Tensor,
                     fill: torch.Tensor, targets: Any, *, softmax: bool, batch_size: int,
                     insert: bool = False, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(B, n)`` scores of the copies of each image with its pixels of rank
    ``< thresholds[k]`` replaced by ``fill`` (``insert``: the image's pixels put back into
    ``fill``), ``k = 0..n-1``; rows built and scored ``batch_size`` at a time.
    ``ranks`` are ``(B, H*W)`` (a pixel: all its channels) or ``(B, C*H*W)`` (each
    element on its own, Quantus 0.6's features on colour images).

    The rows are ``lerp(x, fill, w)`` with 0/1 weights ``w`` (:func:`removal_weights`):
    PyTorch's lerp returns either end exactly at weights 0 and 1, so every row equals
    ``torch.where(chosen, fill, x)`` (zeros may change sign) at a fraction of its cost;
    non-finite inputs, integer images and more than 2**24 pixels take ``torch.where``.
    """
    b, c, h, w = x.shape
    ranks, fill = compact_ranks(ranks), compact_fill(fill)
    n = len(thresholds)
    planes = ranks.shape[-1] // (h * w)  # 1: ranks of pixels; C: ranks of elements (c, y, x)
    exact = (x.is_floating_point() and ranks.shape[-1] < 2**24 and bool(torch.isfinite(x).all())
             and bool(torch.isfinite(fill).all()))
    if exact:
        fill = fill.to(x.dtype)
        rank_f = ranks.to(torch.float32)
        thr_f = thresholds.to(device=x.device, dtype=torch.float32)

        def blend(xi: torch.Tensor, fi: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            weights = weights.view(-1, planes, h, w).to(x.dtype)
            return torch.lerp(fi, xi, weights) if insert else torch.lerp(xi, fi, weights)

        def span(j: int, first: int, stop: int) -> torch.Tensor:
            return blend(x[j:j + 1], fill[j:j + 1], removal_weights(rank_f[j:j + 1], thr_f[first:stop]))

        def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return blend(x[i], fill[i], removal_weights(rank_f[i], thr_f[k]))
    else:
        thr = thresholds.to(device=x.device, dtype=ranks.dtype)

        def rows(r: torch.Tensor, xi: torch.Tensor, fi: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            chosen = (r < t[:, None]).view(-1, planes, h, w)
            return torch.where(chosen, xi, fi) if insert else torch.where(chosen, fi, xi)

        def span(j: int, first: int, stop: int) -> torch.Tensor:
            return rows(ranks[j:j + 1], x[j:j + 1], fill[j:j + 1], thr[first:stop])

        def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            return rows(ranks[i], x[i], fill[i], thr[k])

    return score_rows(predict, n, build, targets, softmax=softmax, batch_size=batch_size,
                      build_span=span, dtype=dtype, n_images=b)


def cumulative_scores(data: MetricInput, ranks: torch.Tensor, step: int, n_steps: int,
                      fill: torch.Tensor, softmax: bool, *, insert: bool = False) -> torch.Tensor:
    """``(B, n_steps)`` scores with the pixels of rank ``< (k+1) * step`` replaced by
    ``fill`` (or, with ``insert``, put back into ``fill``), ``k = 0..n_steps-1``
    (:func:`threshold_scores`)."""
    thresholds = (torch.arange(1, n_steps + 1, device=data.inputs.device) * step)
    return threshold_scores(data.predict, data.inputs, ranks, thresholds, fill, data.targets,
                            softmax=softmax, batch_size=data.batch_size, insert=insert)


def group_scores(data: MetricInput, ranks: torch.Tensor, step: int, n_steps: int, fill: torch.Tensor,
            softmax: bool) -> torch.Tensor:
    """``(B, n_steps)`` scores with only the pixels of rank in ``[k*step, (k+1)*step)`` replaced."""
    x = data.inputs
    h, w = x.shape[-2:]
    ranks, fill = compact_ranks(ranks), compact_fill(fill)

    def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        r = ranks[i]
        chosen = ((r >= (k * step)[:, None]) & (r < ((k + 1) * step)[:, None])).view(-1, 1, h, w)
        return torch.where(chosen, fill[i], x[i])

    return score_rows(data.predict, n_steps, build, data.targets, softmax=softmax,
                      batch_size=data.batch_size, n_images=len(x))


def group_sums(a: torch.Tensor, ranks: torch.Tensor, step: int, n_steps: int) -> torch.Tensor:
    """``(B, n_steps)`` relevance of the pixels of rank in ``[k*step, (k+1)*step)``."""
    flat = a.flatten(1)
    by_rank = torch.zeros_like(flat).scatter_(1, ranks, flat)  # relevance in rank order
    pad = n_steps * step - flat.shape[1]
    by_rank = torch.nn.functional.pad(by_rank, (0, pad))
    return by_rank.view(flat.shape[0], n_steps, step).sum(-1)
