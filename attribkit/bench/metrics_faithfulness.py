"""Faithfulness metrics named as Quantus names them, batched.

Each takes a :class:`~attribkit.bench.evaluate.MetricInput` and options named as
Quantus's, and returns one score per image. All perturbed inputs of a batch are
built chunk by chunk and scored in ``ceil(rows / batch_size)`` model calls
(:func:`attribkit.bench.metrics_common.score_rows`).

Notation: ``x`` an image, ``a`` its relevance after :func:`preprocess`
(``abs``, ``normalise``), ``f(x)`` the target's logit (``softmax=False``) or
probability (``softmax=True``), ``x_{S->b}`` the image with the pixels ``S`` set
to the baseline ``b`` (``perturb_baseline``).
"""

from __future__ import annotations

import math

import torch

from attribkit.bench import metrics as M
from attribkit.bench.evaluate import MetricInput, MetricResult
from attribkit.bench.metrics_common import (
    ascending_ranks,
    baseline_values,
    compact_fill,
    compact_ranks,
    block_ids,
    block_sums,
    descending_ranks,
    forward_scores,
    generator_for,
    pearson,
    preprocess,
    score_rows,
    spearman,
    step_size,
    trapezoid,
)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1)


def _mean_curve(curves: torch.Tensor) -> dict[str, list[float]]:
    return {"x": list(range(1, curves.shape[1] + 1)), "mean": curves.float().nanmean(0).tolist()}


def _cumulative(data: MetricInput, ranks: torch.Tensor, step: int, n_steps: int,
                fill: torch.Tensor, softmax: bool, *, insert: bool = False) -> torch.Tensor:
    """``(B, n_steps)`` scores with the pixels of rank ``< (k+1) * step`` replaced by
    ``fill`` (or, with ``insert``, put back into ``fill``), ``k = 0..n_steps-1``."""
    x = data.inputs
    b, c, h, w = x.shape
    ranks, fill = compact_ranks(ranks), compact_fill(fill)

    def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if i[0] == i[-1]:  # one image (the usual chunk): broadcast it instead of gathering copies
            j = i[:1]
            r, xi, fi = ranks[j], x[j], fill[j]
        else:
            r, xi, fi = ranks[i], x[i], fill[i]
        chosen = (r < ((k + 1) * step).to(ranks.dtype)[:, None]).view(-1, 1, h, w)
        return torch.where(chosen, xi, fi) if insert else torch.where(chosen, fi, xi)

    return score_rows(data.predict, n_steps, build, data.targets, softmax=softmax,
                      batch_size=data.batch_size)


def _chunks(data: MetricInput, ranks: torch.Tensor, step: int, n_steps: int, fill: torch.Tensor,
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
                      batch_size=data.batch_size)


def _chunk_sums(a: torch.Tensor, ranks: torch.Tensor, step: int, n_steps: int) -> torch.Tensor:
    """``(B, n_steps)`` relevance of the pixels of rank in ``[k*step, (k+1)*step)``."""
    flat = _flat(a)
    by_rank = torch.zeros_like(flat).scatter_(1, ranks, flat)  # relevance in rank order
    pad = n_steps * step - flat.shape[1]
    by_rank = torch.nn.functional.pad(by_rank, (0, pad))
    return by_rank.view(flat.shape[0], n_steps, step).sum(-1)


# ------------------------------------------------------------------- pixel flipping

def pixel_flipping(data: MetricInput, *, features_in_step: int | None = None, perturb_baseline: str | float = "black",
                   abs: bool = False, normalise: bool = True, softmax: bool = True) -> MetricResult:
    """Pixel flipping (Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear
    Classifier Decisions by Layer-Wise Relevance Propagation", PLoS ONE 10(7)).

    Pixels are replaced by the baseline in decreasing relevance, ``features_in_step``
    more at each of ``K = ceil(HW / features_in_step)`` steps, cumulatively; with
    ``y_k = f(x_{S_k -> b})`` (``S_k`` the top ``k * features_in_step`` pixels), the
    score is the area under ``y_1..y_K`` with unit steps,
    ``sum_k (y_k + y_{k+1}) / 2`` (Quantus's ``return_auc_per_sample=True``).
    Lower is better. Curves: the mean ``y_k``.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    b, c, h, w = data.inputs.shape
    features_in_step = step_size(features_in_step, h * w)
    n_steps = math.ceil(h * w / features_in_step)
    fill = baseline_values(data.inputs, perturb_baseline, generator_for(0))
    curves = _cumulative(data, descending_ranks(a), features_in_step, n_steps, fill, softmax)
    return MetricResult(trapezoid(curves).float(), _mean_curve(curves))


# --------------------------------------------------------------- region perturbation

def _region_curves(data: MetricInput, a: torch.Tensor, patch_size: int, order: str,
                   n_regions: int | None, perturb_baseline: str | float, softmax: bool,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores after removing the first ``k`` patches (``k = 1..n_regions``) in ``order``;
    returns ``(f(x) (B,), curves (B, n_regions))``."""
    x = data.inputs
    b, c, h, w = x.shape
    ids, n_blocks = block_ids(h, w, patch_size, x.device)
    sums = block_sums(a, ids, n_blocks)
    if order == "morf":
        block_rank = descending_ranks(sums)
    elif order == "lerf":
        block_rank = ascending_ranks(sums)
    elif order == "random":
        keys = torch.rand(b, n_blocks, generator=generator_for(seed)).to(x.device)
        block_rank = descending_ranks(keys)
    else:
        raise ValueError(f"order must be 'morf', 'lerf' or 'random', got {order!r}")
    pixel_rank = block_rank[:, ids]  # (B, HW): the rank of each pixel's patch
    n = n_blocks if n_regions is None else min(n_regions, n_blocks)
    fill = baseline_values(x, perturb_baseline, generator_for(seed))
    curves = _cumulative(data, pixel_rank, 1, n, fill, softmax)
    return forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size), curves


def region_perturbation(data: MetricInput, *, patch_size: int = 8, order: str = "morf",
                        regions_evaluation: int = 100, perturb_baseline: str | float = "black",
                        abs: bool = False, normalise: bool = True, softmax: bool = True,
                        seed: int = 0, quantus_compat: bool = False) -> MetricResult:
    """Region perturbation, AOPC (Samek et al. 2017, "Evaluating the Visualization of
    What a Deep Neural Network Has Learned", IEEE TNNLS 28(11)).

    The image is tiled into ``patch_size`` squares (padded evenly to a multiple);
    patches are removed (set to the baseline) in ``order`` of their summed
    relevance (``morf``: most relevant first, ``lerf``, ``random``), cumulatively,
    for ``L = min(regions_evaluation, #patches)`` steps. The score is the paper's
    area over the perturbation curve,
    ``AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x) - f(x^{(k)}))`` (the ``k = 0`` term is
    0). Quantus returns the curve ``k = 1..L`` and its mean divides by ``L``:
    ``quantus_compat=True`` gives that mean. Higher is better for MoRF.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    y0, curves = _region_curves(data, a, patch_size, order.lower(), regions_evaluation,
                                perturb_baseline, softmax, seed)
    drops = y0[:, None] - curves
    n = drops.shape[1]
    score = drops.mean(1) if quantus_compat else drops.sum(1) / (n + 1)
    return MetricResult(score.float(), _mean_curve(drops))


def selectivity(data: MetricInput, *, patch_size: int = 8, perturb_baseline: str | float = "black",
                abs: bool = False, normalise: bool = True, softmax: bool = True) -> MetricResult:
    """Selectivity (Montavon, Samek & Müller 2018, "Methods for Interpreting and
    Understanding Deep Neural Networks", Digital Signal Processing 73).

    Patches of ``patch_size`` are removed in decreasing summed relevance until
    none is left; ``y_k = f(x^{(k)})`` for ``k = 1..#patches``; the score is the area
    under ``y_k`` with unit steps (Quantus's ``get_auc_score``). Lower is better.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    _, curves = _region_curves(data, a, patch_size, "morf", None, perturb_baseline, softmax)
    return MetricResult(trapezoid(curves).float(), _mean_curve(curves))


# ------------------------------------------------------------------- correlations

def faithfulness_correlation(data: MetricInput, *, nr_runs: int = 100, subset_size: int = 224,
                             perturb_baseline: str | float = "black", abs: bool = False,
                             normalise: bool = True, softmax: bool = False, seed: int = 0) -> MetricResult:
    """Faithfulness correlation (Bhatt, Weller & Moura 2020, "Evaluating and Aggregating
    Feature-based Model Explanations", IJCAI).

    ``nr_runs`` random subsets ``S`` of ``subset_size`` pixels (uniform, without
    replacement) are set to the baseline; the score is the Pearson correlation over
    the runs of ``sum_{i in S} a_i`` and ``f(x) - f(x_{S->b})``. Higher is better.
    Stochastic (``seed``); Quantus draws with NumPy's global RNG.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    x = data.inputs
    b, c, h, w = x.shape
    if not 0 < subset_size < h * w:
        raise ValueError(f"subset_size must be in 1..{h * w - 1} for {h}x{w} images, got {subset_size}")
    gen = generator_for(seed)
    keys = torch.rand(b, nr_runs, h * w, generator=gen).to(x.device)
    chosen = torch.zeros(b, nr_runs, h * w, dtype=torch.bool, device=x.device)
    chosen.scatter_(2, keys.topk(subset_size, dim=2).indices, True)
    fill = baseline_values(x, perturb_baseline, gen)

    def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.where(chosen[i, k].view(-1, 1, h, w), fill[i], x[i])

    y = score_rows(data.predict, nr_runs, build, data.targets, softmax=softmax, batch_size=data.batch_size)
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    sums = (chosen.double() * _flat(a)[:, None, :]).sum(-1)
    return MetricResult(pearson(sums, y0[:, None] - y).float())


def faithfulness_estimate(data: MetricInput, *, features_in_step: int | None = None,
                          perturb_baseline: str | float = "black", abs: bool = False,
                          normalise: bool = True, softmax: bool = False) -> MetricResult:
    """Faithfulness estimate (Alvarez-Melis & Jaakkola 2018, "Towards Robust
    Interpretability with Self-Explaining Neural Networks", NeurIPS).

    The pixels are cut, in decreasing relevance, into groups of ``features_in_step``;
    each group alone is set to the baseline. The score is the Pearson correlation
    over the groups of the group's relevance sum and ``f(x) - f(x_{group->b})``.
    Higher is better.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    h, w = data.inputs.shape[-2:]
    features_in_step = step_size(features_in_step, h * w)
    n_steps = math.ceil(h * w / features_in_step)
    ranks = descending_ranks(a)
    fill = baseline_values(data.inputs, perturb_baseline, generator_for(0))
    y = _chunks(data, ranks, features_in_step, n_steps, fill, softmax)
    y0 = forward_scores(data.predict, data.inputs, data.targets, softmax=softmax, batch_size=data.batch_size)
    sums = _chunk_sums(a, ranks, features_in_step, n_steps)
    return MetricResult(pearson(sums, y0[:, None] - y).float())


def monotonicity(data: MetricInput, *, features_in_step: int | None = None, perturb_baseline: str | float = "black",
                 abs: bool = True, normalise: bool = True, softmax: bool = True,
                 quantus_compat: bool = False) -> MetricResult:
    """Monotonicity (Arya et al. 2019, "One Explanation Does Not Fit All: A Toolkit and
    Taxonomy of AI Explainability Techniques", arXiv:1909.03012).

    Starting from the all-baseline image, the pixels are put back in *increasing*
    relevance, ``features_in_step`` at a time; the score is 1 if ``f`` never
    decreases along the way (``y_{k+1} >= y_k`` for all ``k``), else 0. Higher is better.

    Quantus 0.6 replaces the chosen pixels of the baseline image by the baseline
    again (so the input never changes and every explanation scores 1);
    ``quantus_compat=True`` reproduces that.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    x = data.inputs
    h, w = x.shape[-2:]
    features_in_step = step_size(features_in_step, h * w)
    n_steps = math.ceil(h * w / features_in_step)
    fill = baseline_values(x, perturb_baseline, generator_for(0))
    if quantus_compat:
        y = forward_scores(data.predict, fill, data.targets, softmax=softmax, batch_size=data.batch_size)
        curves = y[:, None].expand(-1, n_steps)
    else:
        curves = _cumulative(data, ascending_ranks(a), features_in_step, n_steps, fill, softmax, insert=True)
    score = (curves.diff(dim=1) >= 0).all(1).float()
    return MetricResult(score, _mean_curve(curves))


def monotonicity_correlation(data: MetricInput, *, features_in_step: int | None = None, nr_samples: int = 5,
                             eps: float = 1e-5, perturb_baseline: str | float = "uniform", abs: bool = True,
                             normalise: bool = True, softmax: bool = True, seed: int = 0) -> MetricResult:
    """Monotonicity correlation (Nguyen & Martínez 2020, "On Quantitative Aspects of
    Model Interpretability", arXiv:2007.07584).

    Pixels are cut, in increasing relevance, into groups of ``features_in_step``; each
    group alone is replaced by the baseline ``nr_samples`` times (``uniform``: fresh
    U(0, 1) values each time), and ``v_g = mean_s (f(x_{g->b_s}) - f(x))^2 / f(x)^2``
    (``/ 1`` when ``|f(x)| < eps``). The score is the Spearman correlation over the
    groups of the group's relevance sum and ``v_g``. Higher is better.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    x = data.inputs
    b, c, h, w = x.shape
    features_in_step = step_size(features_in_step, h * w)
    n_steps = math.ceil(h * w / features_in_step)
    ranks = ascending_ranks(a)
    random_fill = isinstance(perturb_baseline, str) and perturb_baseline.lower() == "uniform"
    gen = generator_for(seed)
    fill = None if random_fill else baseline_values(x, perturb_baseline)
    per_image = n_steps * nr_samples

    def build(i: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        k = row // nr_samples
        r = ranks[i]
        chosen = ((r >= (k * features_in_step)[:, None]) & (r < ((k + 1) * features_in_step)[:, None]))
        values = (torch.rand(x[i].shape, generator=gen).to(x.device, x.dtype) if random_fill else fill[i])
        return torch.where(chosen.view(-1, 1, h, w), values, x[i])

    y = score_rows(data.predict, per_image, build, data.targets, softmax=softmax,
                   batch_size=data.batch_size).view(b, n_steps, nr_samples)
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    inv = torch.where(y0.abs() >= eps, 1.0 / y0.abs(), torch.ones_like(y0)) ** 2
    variance = ((y - y0[:, None, None]) ** 2).mean(2) * inv[:, None]
    sums = _chunk_sums(a, ranks, features_in_step, n_steps)
    return MetricResult(spearman(sums, variance).float())


def sensitivity_n(data: MetricInput, *, n_max_percentage: float = 0.8, features_in_step: int | None = None,
                  n_values: int = 8, nr_samples: int = 16, perturb_baseline: str | float = "black",
                  abs: bool = False, normalise: bool = True, softmax: bool = True, seed: int = 0,
                  quantus_compat: bool = False) -> MetricResult:
    """Sensitivity-n (Ancona et al. 2018, "Towards Better Understanding of Gradient-based
    Attribution Methods for Deep Neural Networks", ICLR).

    The paper: for a subset size ``n``, the Pearson correlation over random subsets
    ``S`` (``|S| = n``) of ``sum_{i in S} a_i`` and ``f(x) - f(x_{S->b})``. Here, per
    image, ``nr_samples`` subsets for each of ``n_values`` sizes spaced geometrically
    from ``features_in_step`` to ``n_max_percentage * HW``; the score is the mean
    correlation over the sizes. Sizes at which the output drops vary by no more
    than float32 rounding (their std ``<= 1e-5 |f(x)|``, typical of single pixels in
    a large image) have no correlation and are left out. Higher is better.
    Curves: the correlation per size.

    Quantus instead removes the pixels cumulatively in relevance order and, at
    each step, correlates over the *images of the batch* the step's relevance sum
    with the output drop, so it has one value per step and none per image;
    ``quantus_compat=True`` computes those (curves ``"x"``/``"mean"``) and gives
    every image their mean (Quantus's ``return_aggregate=True`` default), with the
    maps normalised by the batch's largest as Quantus does (it matters for a
    correlation across images).
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat)
    x = data.inputs
    b, c, h, w = x.shape
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    if quantus_compat:
        features_in_step = step_size(features_in_step, h * w)
        max_features = int(n_max_percentage * h * w // features_in_step)
        n_steps = math.ceil(h * w / features_in_step)
        ranks = descending_ranks(a)
        fill = baseline_values(x, perturb_baseline, generator_for(seed))
        y = _cumulative(data, ranks, features_in_step, n_steps, fill, softmax)
        sums = _chunk_sums(a, ranks, features_in_step, n_steps)
        per_step = pearson((y0[:, None] - y)[:, :max_features].T, sums[:, :max_features].T)
        score = per_step.nanmean().expand(b).clone()
        return MetricResult(score.float(), {"x": list(range(1, max_features + 1)), "mean": per_step.tolist()})
    lo = features_in_step or 1
    hi = max(lo, int(n_max_percentage * h * w))
    sizes = torch.unique(torch.round(torch.logspace(math.log10(lo), math.log10(hi),
                                                    n_values, dtype=torch.float64)).long())
    sizes = sizes.to(x.device)
    gen = generator_for(seed)
    keys = torch.rand(b, len(sizes) * nr_samples, h * w, generator=gen).to(x.device)
    order = descending_ranks(keys.view(-1, h * w)).view(b, -1, h * w)  # a random permutation per row
    limit = sizes.repeat_interleave(nr_samples)
    chosen = order < limit[None, :, None]
    fill = baseline_values(x, perturb_baseline, gen)

    def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.where(chosen[i, k].view(-1, 1, h, w), fill[i], x[i])

    y = score_rows(data.predict, chosen.shape[1], build, data.targets, softmax=softmax,
                   batch_size=data.batch_size)
    sums = (chosen.double() * _flat(a)[:, None, :]).sum(-1)
    drops = (y0[:, None] - y).view(b, len(sizes), nr_samples)
    corr = pearson(sums.view(b, len(sizes), nr_samples), drops)
    # drops that vary by no more than float32 rounding of f(x) correlate with noise: no value
    flat = drops.std(2) <= 1e-5 * y0.abs()[:, None]
    corr = torch.where(flat, torch.full_like(corr, float("nan")), corr)
    return MetricResult(corr.nanmean(1).float(),
                        {"x": sizes.tolist(), "mean": corr.float().nanmean(0).tolist()})


# -------------------------------------------------------------------------- IROF

def superpixels(images: torch.Tensor, segmentation_method: str = "slic",
                patch_size: int = 8) -> torch.Tensor:
    """``(B, H, W)`` segment labels 0..n-1 per image.

    ``"slic"`` / ``"felzenszwalb"``: scikit-image's, as Quantus calls them
    (``slic(img, start_label=0)`` on the channels-last image as float64); these run
    on the CPU, one image at a time (segmentation only; the model calls stay
    batched). ``"grid"``: square patches of ``patch_size``, no loop.
    """
    b, c, h, w = images.shape
    if segmentation_method == "grid":
        ids, _ = block_ids(h, w, patch_size, images.device)
        return ids.view(1, h, w).expand(b, h, w).clone()
    from skimage.segmentation import felzenszwalb, slic

    arrays = images.detach().cpu().double().movedim(1, -1).numpy()
    if segmentation_method == "slic":
        labels = [slic(img, start_label=0) for img in arrays]
    elif segmentation_method == "felzenszwalb":
        labels = [felzenszwalb(img) for img in arrays]
    else:
        raise ValueError(f"segmentation_method must be 'slic', 'felzenszwalb' or 'grid', got {segmentation_method!r}")
    return torch.stack([torch.as_tensor(lab, dtype=torch.long) for lab in labels]).to(images.device)


def irof(data: MetricInput, *, segmentation_method: str = "slic", patch_size: int = 8,
         perturb_baseline: str | float = "mean", abs: bool = False, normalise: bool = True,
         softmax: bool = True, quantus_compat: bool = False) -> MetricResult:
    """Iterative removal of features, IROF (Rieger & Hansen 2020, "IROF: a Low
    Resource Evaluation Metric for Explanation Methods", ICLR workshop AI for
    affordable healthcare, arXiv:2003.08747).

    The image is segmented into superpixels; they are removed (set to the
    baseline) in decreasing mean relevance, cumulatively. With ``n`` segments and
    ``p_k = f(x^{(k)}) / f(x)``, ``k = 1..n``, the score is the area over the curve
    ``n - trapz(p_1..p_n, 0)`` (unit steps; Quantus pads the curves of a batch with
    zeros up to its largest segment count, and so does this). Higher is better.

    ``perturb_baseline="mean"`` is the image's own mean, as in the paper; Quantus
    takes the mean of the whole batch as it is being perturbed at each step, so
    an image's score depends on the others: ``quantus_compat=True`` does that
    (one batched forward per step).
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    x = data.inputs
    b, c, h, w = x.shape
    segments = superpixels(x, segmentation_method, patch_size).flatten(1)  # (B, HW)
    n_seg = segments.amax(1) + 1
    top = int(n_seg.max())
    counts = torch.zeros(b, top, dtype=torch.float64, device=x.device).scatter_add_(
        1, segments, torch.ones_like(segments, dtype=torch.float64))
    means = torch.zeros(b, top, dtype=torch.float64, device=x.device).scatter_add_(1, segments, _flat(a))
    means = torch.where(counts > 0, means / counts.clamp(min=1), torch.full_like(means, -torch.inf))
    seg_rank = descending_ranks(means)
    pixel_rank = seg_rank.gather(1, segments)  # (B, HW): rank of each pixel's segment
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    if quantus_compat and perturb_baseline == "mean":
        ys, current = [], x
        for k in range(top):
            chosen = (pixel_rank == k).view(b, 1, h, w)
            current = torch.where(chosen, current.mean(), current)
            ys.append(forward_scores(data.predict, current, data.targets, softmax=softmax,
                                     batch_size=data.batch_size))
        y = torch.stack(ys, 1)
    else:
        fill = baseline_values(x, perturb_baseline, generator_for(0))
        y = _cumulative(data, pixel_rank, 1, top, fill, softmax)
    valid = (torch.arange(top, device=x.device)[None, :] < n_seg[:, None]).double()
    p = y / y0[:, None] * valid
    return MetricResult((valid.sum(1) - trapezoid(p)).float(), _mean_curve(p))


# -------------------------------------------------------------------------- ROAD

def road(data: MetricInput, *, percentages: tuple[int, ...] = tuple(range(5, 100, 10)), noise: float = 0.01,
         order: str = "morf", abs: bool = False, normalise: bool = True, seed: int = 0,
         iterations: int = 60) -> MetricResult:
    """ROAD, RemOve And Debias (Rong et al. 2022, "A Consistent and Efficient Evaluation
    Strategy for Attribution Methods", ICML), as Quantus scores it.

    For each ``p`` in ``percentages`` (default 5, 15, ..., 95; Quantus's default is
    1, 3, ..., 99: pass ``percentages=tuple(range(1, 100, 2))``), the ``floor(HW * p / 100)`` most (``order="morf"``)
    or least (``lerf``) relevant pixels are removed and filled by noisy linear
    imputation (:func:`attribkit.bench.metrics.noisy_linear_impute`, noise std
    ``noise``); the score is the share of percentages at which the model still
    predicts the explained class (Quantus averages this 0/1 curve over the images
    per percentage; here each image's mean is its score). Lower is better for MoRF.
    The imputation solves the paper's linear system by Jacobi sweeps on the
    device rather than by a sparse direct solve (results agree to a few 1e-3 of
    the intensity range), so the 0/1 curves agree with Quantus at most points, not all.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    x = data.inputs
    b, c, h, w = x.shape
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    ranks = (descending_ranks(a) if order == "morf" else ascending_ranks(a)).view(b, 1, h, w)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    counts = [int(h * w * p / 100) for p in percentages]
    n = len(counts)
    out = []
    chunk = max(1, data.batch_size // max(1, b))
    for start in range(0, n, chunk):  # a chunk of percentages for the whole batch at once
        part = counts[start:start + chunk]
        removed = torch.cat([ranks < k for k in part])  # (len(part) * B, 1, H, W)
        imputed = M.noisy_linear_impute(x.repeat(len(part), 1, 1, 1), removed, noise=noise,
                                        iterations=iterations, generator=gen)
        with torch.no_grad():
            scores = torch.as_tensor(data.predict(imputed))
        out.append((scores.argmax(1) == data.targets.repeat(len(part))).view(len(part), b))
    curves = torch.cat(out).T.double()  # (B, n)
    return MetricResult(curves.mean(1).float(), {"x": list(percentages), "mean": curves.mean(0).tolist()})


# ------------------------------------------------------------------- sufficiency

def sufficiency(data: MetricInput, *, threshold: float = 0.6, abs: bool = True,
                normalise: bool = True) -> MetricResult:
    """Sufficiency (Dasgupta, Frost & Moshkovitz 2022, "Framework for Evaluating
    Faithfulness of Local Explanations", ICML).

    Explanations are compared across the batch by the standardised Euclidean
    distance (per-feature variance of the stacked maps, ``ddof=1``, as SciPy's
    ``cdist(A, A, "seuclidean")``), divided by the largest distance; two images are
    *neighbours* when that is ``<= threshold``. The score of an image is the share of
    its neighbours (itself excluded) predicted as the same class (0 without
    neighbours). Higher is better. Depends on the batch by definition.
    """
    a = _flat(preprocess(data.relevance, abs=abs, normalise=normalise))
    stacked = torch.cat([a, a])
    var = stacked.var(0, unbiased=True)
    scaled = a / var.sqrt()
    d = torch.cdist(scaled, scaled, compute_mode="donot_use_mm_for_euclid_dist")
    d = d / d.abs().max()
    similar = (d <= threshold).double() * (1 - torch.eye(len(a), dtype=torch.float64, device=a.device))
    with torch.no_grad():
        pred = torch.as_tensor(data.predict(data.inputs)).argmax(1)
    same = (pred[None, :] == pred[:, None]).double()
    total = similar.sum(1)
    score = torch.where(total > 0, (same * similar).sum(1) / total.clamp(min=1), torch.zeros_like(total))
    return MetricResult(score.float())
