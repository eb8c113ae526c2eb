"""Faithfulness metrics that compare relevance with output changes (faithfulness
correlation and estimate, monotonicity correlation, sensitivity-n, infidelity) and
sufficiency, named as Quantus names them, batched. Notation as in :mod:`attribkit.evaluation.faithfulness`.
"""

from __future__ import annotations

import math

import torch

from attribkit.evaluation.base import MetricInput, MetricResult
from attribkit.evaluation.defaults import (
    patch_side,
    positive_int,
    scaled_count,
    step_size,
)
from attribkit.evaluation.rows import (
    ascending_ranks,
    baseline_values,
    block_ids,
    block_sums,
    cumulative_scores,
    descending_ranks,
    forward_scores,
    generator_for,
    group_scores,
    group_sums,
    pearson,
    preprocess,
    score_rows,
    spearman,
)
from attribkit.evaluation.scoring import predicted_classes


def faithfulness_correlation(data: MetricInput, *, nr_runs: int = 100, subset_size: int | None = None,
                             perturb_baseline: str | float = "black", abs: bool = False,
                             normalise: bool = True, softmax: bool = False, seed: int = 0) -> MetricResult:
    """Faithfulness correlation (Bhatt, Weller & Moura 2020, "Evaluating and Aggregating
    Feature-based Model Explanations", IJCAI).

    ``nr_runs`` random subsets ``S`` of ``subset_size`` pixels (uniform, without
    replacement; default ``HW / 224``, Quantus's 224 at 224 x 224) are set to the baseline; the score is the Pearson correlation over
    the runs of ``sum_{i in S} a_i`` and ``f(x) - f(x_{S->b})``. Higher is better.
    Stochastic (``seed``); Quantus draws with NumPy's global RNG.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    x = data.inputs
    b, c, h, w = x.shape
    subset_size = scaled_count(subset_size, h * w, 224, "subset_size", below=True)
    nr_runs = positive_int("nr_runs", nr_runs)
    gen = generator_for(seed)
    keys = torch.rand(b, nr_runs, h * w, generator=gen).to(x.device)
    chosen = torch.zeros(b, nr_runs, h * w, dtype=torch.bool, device=x.device)
    chosen.scatter_(2, keys.topk(subset_size, dim=2).indices, True)
    fill = baseline_values(x, perturb_baseline, gen)

    def build(i: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.where(chosen[i, k].view(-1, 1, h, w), fill[i], x[i])

    y = score_rows(data.predict, nr_runs, build, data.targets, softmax=softmax, batch_size=data.batch_size,
                   n_images=len(x))
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    sums = (chosen.double() * a.flatten(1)[:, None, :]).sum(-1)
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
    y = group_scores(data, ranks, features_in_step, n_steps, fill, softmax)
    y0 = forward_scores(data.predict, data.inputs, data.targets, softmax=softmax, batch_size=data.batch_size)
    sums = group_sums(a, ranks, features_in_step, n_steps)
    return MetricResult(pearson(sums, y0[:, None] - y).float())


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
                   batch_size=data.batch_size, n_images=len(x)).view(b, n_steps, nr_samples)
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    inv = torch.where(y0.abs() >= eps, 1.0 / y0.abs(), torch.ones_like(y0)) ** 2
    variance = ((y - y0[:, None, None]) ** 2).mean(2) * inv[:, None]
    sums = group_sums(a, ranks, features_in_step, n_steps)
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
        y = cumulative_scores(data, ranks, features_in_step, n_steps, fill, softmax)
        sums = group_sums(a, ranks, features_in_step, n_steps)
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
                   batch_size=data.batch_size, n_images=len(data.inputs))
    sums = (chosen.double() * a.flatten(1)[:, None, :]).sum(-1)
    drops = (y0[:, None] - y).view(b, len(sizes), nr_samples)
    corr = pearson(sums.view(b, len(sizes), nr_samples), drops)
    # drops that vary by no more than float32 rounding of f(x) correlate with noise: no value
    flat = drops.std(2) <= 1e-5 * y0.abs()[:, None]
    corr = torch.where(flat, torch.full_like(corr, float("nan")), corr)
    return MetricResult(corr.nanmean(1).float(),
                        {"x": sizes.tolist(), "mean": corr.float().nanmean(0).tolist()})


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
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)
    stacked = torch.cat([a, a])
    var = stacked.var(0, unbiased=True)
    scaled = a / var.sqrt()
    d = torch.cdist(scaled, scaled, compute_mode="donot_use_mm_for_euclid_dist")
    d = d / d.abs().max()
    similar = (d <= threshold).double() * (1 - torch.eye(len(a), dtype=torch.float64, device=a.device))
    with torch.no_grad():
        pred = predicted_classes(data.predict(data.inputs))
    same = (pred[None, :] == pred[:, None]).double()
    total = similar.sum(1)
    score = torch.where(total > 0, (same * similar).sum(1) / total.clamp(min=1), torch.zeros_like(total))
    return MetricResult(score.float())


# -------------------------------------------------------------------- infidelity

def infidelity(data: MetricInput, *, perturb_patch_sizes: tuple[int, ...] | list[int] | None = None,
               n_perturb_samples: int = 10, perturb_baseline: str | float = "black", loss_func: str = "mse",
               abs: bool = False, normalise: bool = False, softmax: bool = False, seed: int = 0,
               quantus_compat: bool = False) -> MetricResult:
    """Infidelity (Yeh et al. 2019, "On the (In)fidelity and Sensitivity of Explanations",
    NeurIPS): ``INFD = E_I[(I^T a - (f(x) - f(x - I)))^2]``, the mean squared gap between
    the relevance-weighted perturbation and the output drop it causes. Lower is better.

    The perturbations ``I = x - x'`` are the paper's square removals on a grid: for
    each ``p`` in ``perturb_patch_sizes`` (default: the one side that makes an 8 x 8
    grid, :func:`~attribkit.evaluation.rows.patch_side`) the image is tiled into ``p x p`` squares
    (padded evenly, as region perturbation), and each square alone is set to the
    baseline (``x' = x_{square->b}``), so ``I^T a = sum_{i in square} a_i sum_c (x_ic - b_ic)``.
    The expectation is the mean over the squares, then over the patch sizes, then over
    ``n_perturb_samples`` draws of the baseline (only ``"uniform"`` draws; a fixed
    baseline gives the same perturbations every time, so they are scored once).

    Quantus 0.6 removes the squares *cumulatively* in row-major order (the ``k``-th
    perturbation is the first ``k`` squares together) and fails for a patch size that
    does not divide the image (an edge-padded array reshaped to the unpadded size);
    it normalises by the batch's largest map. ``quantus_compat=True`` does all three
    (a patch size that does not divide is tiled as above).
    """
    if loss_func != "mse":
        raise ValueError(f"loss_func must be 'mse', got {loss_func!r}")
    a = preprocess(data.relevance, abs=abs, normalise=normalise, per_image=not quantus_compat)
    x = data.inputs
    b, c, h, w = x.shape
    sides = [patch_side(None, h, w)] if perturb_patch_sizes is None else \
        [patch_side(p, h, w, "perturb_patch_sizes") for p in perturb_patch_sizes]
    random_fill = isinstance(perturb_baseline, str) and perturb_baseline.lower() == "uniform"
    samples = positive_int("n_perturb_samples", n_perturb_samples) if random_fill else 1
    gen = generator_for(seed)
    fills = torch.stack([baseline_values(x, perturb_baseline, gen) for _ in range(samples)], 1)  # (B, S, C, H, W)
    y0 = forward_scores(data.predict, x, data.targets, softmax=softmax, batch_size=data.batch_size)
    losses = []
    for p in sides:
        ids, n_blocks = block_ids(h, w, p, x.device)
        ids_c = ids.to(torch.int32)
        # I^T a per square: sum over the square's pixels of a * sum_c (x - fill)
        weighted = (a[:, None] * (x[:, None] - fills).double().sum(2)).flatten(2)  # (B, S, HW)
        sums = block_sums(weighted.flatten(0, 1), ids, n_blocks).view(b, samples, n_blocks)
        if quantus_compat:
            sums = sums.cumsum(2)

        def build(i: torch.Tensor, row: torch.Tensor, ids_c=ids_c, n_blocks=n_blocks) -> torch.Tensor:
            s, k = row // n_blocks, (row % n_blocks).to(torch.int32)
            chosen = (ids_c[None, :] <= k[:, None]) if quantus_compat else (ids_c[None, :] == k[:, None])
            return torch.where(chosen.view(-1, 1, h, w), fills[i, s], x[i])

        y = score_rows(data.predict, samples * n_blocks, build, data.targets, softmax=softmax,
                       batch_size=data.batch_size, n_images=len(x)).view(b, samples, n_blocks)
        losses.append(((y0[:, None, None] - y - sums) ** 2).mean(2))  # (B, S)
    score = torch.stack(losses, 2).mean(2).mean(1)
    return MetricResult(score.float())
