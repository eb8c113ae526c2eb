"""Faithfulness metrics that remove pixels in relevance order and follow the output
(deletion / insertion, pixel flipping, region perturbation, selectivity,
monotonicity, IROF, ROAD), batched.

Each takes a :class:`~attribkit.evaluation.base.MetricInput` and options named as
Quantus's, and returns one score per image. All perturbed inputs of a batch are
built chunk by chunk and scored in ``ceil(rows / batch_size)`` model calls
(:func:`attribkit.evaluation.rows.score_rows`). The correlation-based faithfulness
metrics are in :mod:`attribkit.evaluation.faithfulness_correlation`.

Notation: ``x`` an image, ``a`` its relevance after :func:`preprocess`
(``abs``, ``normalise``), ``f(x)`` the target's logit (``softmax=False``) or
probability (``softmax=True``), ``x_{S->b}`` the image with the pixels ``S`` set
to the baseline ``b`` (``perturb_baseline``).
"""

from __future__ import annotations

import math

import torch

from attribkit.evaluation import functional as M
from attribkit.evaluation.base import MetricInput, MetricResult
from attribkit.evaluation.defaults import patch_side, positive_int, step_size
from attribkit.evaluation.rows import (
    ascending_ranks,
    baseline_values,
    block_ids,
    block_sums,
    cumulative_scores,
    descending_ranks,
    forward_scores,
    generator_for,
    mean_curve,
    preprocess,
    trapezoid,
)
from attribkit.evaluation.scoring import class_indices, predicted_classes


def _curve(curves: torch.Tensor, x: torch.Tensor) -> dict[str, list[float]]:
    return {"x": x.tolist(), "mean": curves.mean(0).tolist()}


# ----------------------------------------------------------- deletion, insertion, ROAD

def deletion_auc(data: MetricInput, *, steps: int = 32, baseline: float | None = None,
                 blur_sigma: float = 5.0) -> MetricResult:
    """Deletion AUC (Petsiuk et al. 2018), lower is better; deleted pixels take the
    blurred image's values unless ``baseline`` is a constant; see :func:`metrics.deletion_insertion`."""
    auc, curves = M.deletion_insertion(data.predict, data.inputs, data.relevance, data.targets,
                                       mode="deletion", steps=steps, baseline=baseline,
                                       blur_sigma=blur_sigma, batch_size=data.batch_size)
    return MetricResult(auc, _curve(curves, torch.linspace(0, 1, steps + 1)))


def insertion_auc(data: MetricInput, *, steps: int = 32, blur_sigma: float = 5.0) -> MetricResult:
    """Insertion AUC (Petsiuk et al. 2018), higher is better."""
    auc, curves = M.deletion_insertion(data.predict, data.inputs, data.relevance, data.targets,
                                       mode="insertion", steps=steps, blur_sigma=blur_sigma,
                                       batch_size=data.batch_size)
    return MetricResult(auc, _curve(curves, torch.linspace(0, 1, steps + 1)))


ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def road_morf(data: MetricInput, *, noise: float = 0.01, seed: int = 0) -> MetricResult:
    """ROAD, most relevant first (Rong et al. 2022): mean target probability, lower is better."""
    score, curves = M.road(data.predict, data.inputs, data.relevance, data.targets, order="morf",
                           fractions=ROAD_FRACTIONS, noise=noise, seed=seed, batch_size=data.batch_size)
    return MetricResult(score, _curve(curves, torch.tensor(ROAD_FRACTIONS)))


def road_lerf(data: MetricInput, *, noise: float = 0.01, seed: int = 0) -> MetricResult:
    """ROAD, least relevant first (Rong et al. 2022): mean target probability, higher is better."""
    score, curves = M.road(data.predict, data.inputs, data.relevance, data.targets, order="lerf",
                           fractions=ROAD_FRACTIONS, noise=noise, seed=seed, batch_size=data.batch_size)
    return MetricResult(score, _curve(curves, torch.tensor(ROAD_FRACTIONS)))


# ------------------------------------------------------------------- pixel flipping

def pixel_flipping(data: MetricInput, *, features_in_step: int | None = None, perturb_baseline: str | float = "black",
                   abs: bool = False, normalise: bool = True, softmax: bool = True,
                   quantus_compat: bool = False) -> MetricResult:
    """Pixel flipping (Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear
    Classifier Decisions by Layer-Wise Relevance Propagation", PLoS ONE 10(7)).

    Pixels are replaced by the baseline in decreasing relevance, ``features_in_step``
    more at each of ``K = ceil(HW / features_in_step)`` steps, cumulatively; with
    ``y_k = f(x_{S_k -> b})`` (``S_k`` the top ``k * features_in_step`` pixels), the
    score is the area under ``y_1..y_K`` with unit steps,
    ``sum_k (y_k + y_{k+1}) / 2`` (Quantus's ``return_auc_per_sample=True``).
    Lower is better. Curves: the mean ``y_k``.

    A pixel is flipped with all its channels (as the paper and Quantus 0.5). Quantus
    0.6 ranks the ``C*H*W`` elements of the map broadcast over the channels and flips
    ``features_in_step`` *elements* per step, so a colour pixel's channels can fall in
    different steps: ``quantus_compat=True`` does that (``K = ceil(CHW /
    features_in_step)``), a pixel's channels in channel order. Where ``C`` divides
    ``features_in_step`` every step holds whole pixels and this is exactly Quantus 0.6;
    otherwise Quantus's unstable ``np.argsort`` decides which of a split pixel's
    channels goes first, which no implementation can reproduce reliably.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    b, c, h, w = data.inputs.shape
    ranks = descending_ranks(a)
    n_features = h * w
    if quantus_compat and c > 1:  # element ranks: the pixel's rank, then its channel
        ranks = (ranks[:, None, :] * c + torch.arange(c, device=ranks.device)[None, :, None]).flatten(1)
        n_features = c * h * w
    features_in_step = step_size(features_in_step, n_features)
    n_steps = math.ceil(n_features / features_in_step)
    fill = baseline_values(data.inputs, perturb_baseline, generator_for(0))
    curves = cumulative_scores(data, ranks, features_in_step, n_steps, fill, softmax)
    return MetricResult(trapezoid(curves).float(), mean_curve(curves))


# --------------------------------------------------------------- region perturbation

def _region_curves(data: MetricInput, a: torch.Tensor, patch_size: int | None, order: str,
                   n_regions: int | None, perturb_baseline: str | float, softmax: bool,
                   seed: int = 0) -> torch.Tensor:
    """``(B, n_regions)`` scores after removing the first ``k`` patches (``k = 1..n_regions``)
    in ``order``; patches of ``patch_size`` (None: an 8 x 8 grid, :func:`patch_side`)."""
    x = data.inputs
    b, c, h, w = x.shape
    ids, n_blocks = block_ids(h, w, patch_side(patch_size, h, w), x.device)
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
    n = n_blocks if n_regions is None else min(positive_int("regions_evaluation", n_regions), n_blocks)
    fill = baseline_values(x, perturb_baseline, generator_for(seed))
    return cumulative_scores(data, pixel_rank, 1, n, fill, softmax)


def region_perturbation(data: MetricInput, *, patch_size: int | None = None, order: str = "morf",
                        regions_evaluation: int = 100, perturb_baseline: str | float = "black",
                        abs: bool = False, normalise: bool = True, softmax: bool = True,
                        seed: int = 0, quantus_compat: bool = False) -> MetricResult:
    """Region perturbation, AOPC (Samek et al. 2017, "Evaluating the Visualization of
    What a Deep Neural Network Has Learned", IEEE TNNLS 28(11)).

    The image is tiled into ``patch_size`` squares (padded evenly to a multiple;
    default: the side that makes an 8 x 8 grid, 64 patches at any image size);
    patches are removed (set to the baseline) in ``order`` of their summed
    relevance (``morf``: most relevant first, ``lerf``, ``random``), cumulatively,
    for ``L = min(regions_evaluation, #patches)`` steps. The score is the paper's
    area over the perturbation curve,
    ``AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x) - f(x^{(k)}))`` (the ``k = 0`` term is
    0). Quantus returns the curve ``k = 1..L`` and its mean divides by ``L``:
    ``quantus_compat=True`` gives that mean. Higher is better for MoRF.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    curves = _region_curves(data, a, patch_size, order.lower(), regions_evaluation,
                            perturb_baseline, softmax, seed)
    y0 = forward_scores(data.predict, data.inputs, data.targets, softmax=softmax, batch_size=data.batch_size)
    drops = y0[:, None] - curves
    n = drops.shape[1]
    score = drops.mean(1) if quantus_compat else drops.sum(1) / (n + 1)
    return MetricResult(score.float(), mean_curve(drops))


def selectivity(data: MetricInput, *, patch_size: int | None = None, perturb_baseline: str | float = "black",
                abs: bool = False, normalise: bool = True, softmax: bool = True) -> MetricResult:
    """Selectivity (Montavon, Samek & Müller 2018, "Methods for Interpreting and
    Understanding Deep Neural Networks", Digital Signal Processing 73).

    Patches of ``patch_size`` (default: an 8 x 8 grid) are removed in decreasing summed relevance until
    none is left; ``y_k = f(x^{(k)})`` for ``k = 1..#patches``; the score is the area
    under ``y_k`` with unit steps (Quantus's ``get_auc_score``). Lower is better.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise)
    curves = _region_curves(data, a, patch_size, "morf", None, perturb_baseline, softmax)
    return MetricResult(trapezoid(curves).float(), mean_curve(curves))


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
        curves = cumulative_scores(data, ascending_ranks(a), features_in_step, n_steps, fill, softmax, insert=True)
    score = (curves.diff(dim=1) >= 0).all(1).float()
    return MetricResult(score, mean_curve(curves))


# -------------------------------------------------------------------------- IROF

def superpixels(images: torch.Tensor, segmentation_method: str = "slic",
                patch_size: int | None = None) -> torch.Tensor:
    """``(B, H, W)`` segment labels 0..n-1 per image.

    ``"slic"`` / ``"felzenszwalb"``: scikit-image's, as Quantus calls them
    (``slic(img, start_label=0)`` on the channels-last image as float64); these run
    on the CPU, one image at a time (segmentation only; the model calls stay
    batched). ``"grid"``: square patches of ``patch_size`` (None: an 8 x 8 grid), no loop.
    """
    b, c, h, w = images.shape
    if segmentation_method == "grid":
        ids, _ = block_ids(h, w, patch_side(patch_size, h, w), images.device)
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


def irof(data: MetricInput, *, segmentation_method: str = "slic", patch_size: int | None = None,
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
    means = torch.zeros(b, top, dtype=torch.float64, device=x.device).scatter_add_(1, segments, a.flatten(1))
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
        y = cumulative_scores(data, pixel_rank, 1, top, fill, softmax)
    valid = (torch.arange(top, device=x.device)[None, :] < n_seg[:, None]).double()
    p = y / y0[:, None] * valid
    return MetricResult((valid.sum(1) - trapezoid(p)).float(), mean_curve(p))


# -------------------------------------------------------------------------- ROAD

def road(data: MetricInput, *, percentages: tuple[int, ...] = tuple(range(5, 100, 10)), noise: float = 0.01,
         order: str = "morf", abs: bool = False, normalise: bool = True, seed: int = 0,
         iterations: int = 60) -> MetricResult:
    """ROAD, RemOve And Debias (Rong et al. 2022, "A Consistent and Efficient Evaluation
    Strategy for Attribution Methods", ICML), as Quantus scores it.

    For each ``p`` in ``percentages`` (default 5, 15, ..., 95; Quantus's default is
    1, 3, ..., 99: pass ``percentages=tuple(range(1, 100, 2))``), the ``floor(HW * p / 100)`` most (``order="morf"``)
    or least (``lerf``) relevant pixels are removed and filled by noisy linear
    imputation (:func:`attribkit.evaluation.functional.noisy_linear_impute`, noise std
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
    classes = class_indices(data.targets, "road")
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
            pred = predicted_classes(data.predict(imputed))
        out.append((pred == classes.repeat(len(part))).view(len(part), b))
    curves = torch.cat(out).T.double()  # (B, n)
    return MetricResult(curves.mean(1).float(), {"x": list(percentages), "mean": curves.mean(0).tolist()})
