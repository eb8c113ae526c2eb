"""Faithfulness and localisation metrics, batched on the device.

Every function takes a batch and returns one score per image, so a caller can
average, bootstrap or plot them. Metrics that only need forwards take a
``predict(batch) -> scores`` callable (a PyTorch module qualifies), never the
model's internals.

Relevance maps here are ``(B, H, W)`` tensors at the input resolution; use
:func:`pixel_relevance` to get them from any attribution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from attribkit.evaluation.rows import average_ranks, descending_ranks, threshold_scores
from attribkit.evaluation.scoring import target_scores

Predict = Callable[[torch.Tensor], torch.Tensor]


def pixel_relevance(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, C, h, w)`` attribution -> ``(B, H, W)``: channels summed, layer maps
    resized bilinearly (``align_corners=False``) to ``size``."""
    values = values.detach().float()
    if values.ndim == 3:
        values = values[:, None]
    rel = values.sum(1, keepdim=True)
    if tuple(rel.shape[-2:]) != tuple(size):
        rel = F.interpolate(rel, size=size, mode="bilinear", align_corners=False)
    return rel[:, 0]


# ----------------------------------------------------------------- localisation

def pointing_game(relevance: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """1 where the most relevant pixel lies inside the evidence mask, else 0
    (Zhang et al. 2018, "Top-down Neural Attention by Excitation Backprop";
    no tolerance margin)."""
    flat = relevance.flatten(1)
    top = flat.argmax(1)
    return masks.flatten(1).gather(1, top[:, None]).squeeze(1).float()


def relevance_mass_accuracy(relevance: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``R_within / R_total`` over the positive relevance (Arras, Osman & Samek 2022,
    CLEVR-XAI, Information Fusion 81). 0 for an all-non-positive map."""
    pos = relevance.clamp(min=0).flatten(1)
    inside = (pos * masks.flatten(1)).sum(1)
    total = pos.sum(1)
    return torch.where(total > 0, inside / total.clamp(min=torch.finfo(pos.dtype).tiny),
                       torch.zeros_like(total))


def relevance_rank_accuracy(relevance: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Fraction of the ``K = |mask|`` most relevant pixels that lie inside the
    mask (Arras, Osman & Samek 2022, CLEVR-XAI)."""
    m = masks.flatten(1).float()
    k = m.sum(1).long()
    top = pixel_ranks(relevance) < k[:, None]
    return (top.float() * m).sum(1) / k.clamp(min=1)


# -------------------------------------------------------- deletion / insertion

def gaussian_blur(images: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (the insertion start image)."""
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    radius = min(radius, images.shape[-1] - 1, images.shape[-2] - 1)
    kernel = kernel[len(kernel) // 2 - radius: len(kernel) // 2 + radius + 1]
    kernel = kernel / kernel.sum()
    out = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def pixel_ranks(relevance: torch.Tensor) -> torch.Tensor:
    """``(B, H*W)`` rank of each pixel, 0 = most relevant (ties: first pixel first);
    :func:`attribkit.evaluation.rows.descending_ranks`."""
    return descending_ranks(relevance)


def target_probability(predict: Predict, batch: torch.Tensor, targets: Any, batch_size: int,
                       images: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax probability of class ``targets`` for each row of ``batch``, in chunks
    (float32); row ``k`` is a copy of image ``images[k]`` (``None``: ``targets`` are
    per row). For a target object or callable, its score instead
    (:func:`attribkit.evaluation.scoring.target_scores`)."""
    if images is None:
        images = torch.arange(len(batch))
    out = []
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            rows = images[start:start + batch_size]
            out.append(target_scores(predict(batch[start:start + batch_size]), targets, rows,
                                     softmax=True, dtype=torch.float32))
    return torch.cat(out)


def trapezoid_auc(curves: torch.Tensor) -> torch.Tensor:
    """Area under ``(B, n+1)`` curves sampled at ``0, 1/n, ..., 1``."""
    n = curves.shape[1] - 1
    return (curves[:, 1:] + curves[:, :-1]).sum(1) / (2 * n)


def deletion_insertion(predict: Predict, images: torch.Tensor, relevance: torch.Tensor,
                       targets: Any, *, mode: str = "deletion", steps: int = 32,
                       baseline: torch.Tensor | float | None = None, blur_sigma: float = 5.0,
                       batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Deletion / insertion curves and AUCs (Petsiuk, Das & Saenko 2018, RISE).

    Pixels are ranked by relevance. *Deletion* replaces the top ``k/steps``
    fraction with ``baseline``: a constant or tensor, or by default (``None``)
    the image blurred with ``blur_sigma`` (Petsiuk et al. use 0; scattered
    black pixels push the image off the data distribution so fast that a
    random order scores as well as real attributions, which the blurred
    baseline avoids). *Insertion* starts from the blurred image and puts the
    top fraction of original pixels back; the target's
    softmax probability (a target object's or callable's own score) is recorded at ``k = 0..steps`` and the curve integrated
    with the trapezoid rule over [0, 1]. Lower deletion AUC and higher
    insertion AUC are better. All steps of all images run as batched forwards.
    Returns ``(auc (B,), curves (B, steps + 1))``.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    b, c, h, w = images.shape
    ranks = pixel_ranks(relevance)
    fractions = torch.arange(steps + 1, device=images.device) / steps
    counts = torch.round(fractions * h * w)  # pixels deleted / inserted at each step
    if mode == "deletion" and baseline is not None:
        other = torch.as_tensor(baseline, dtype=images.dtype, device=images.device)
        other = other.expand_as(images) if other.ndim else other.expand(b, 1, 1, 1)
    else:
        other = gaussian_blur(images, blur_sigma)
    # rows (image, step) built and scored batch_size at a time; float32 probabilities
    curves = threshold_scores(predict, images, ranks, counts, other, targets, softmax=True,
                              batch_size=batch_size, insert=mode == "insertion", dtype=torch.float32)
    return trapezoid_auc(curves), curves


# ---------------------------------------------------------------------- ROAD

def noisy_linear_impute(images: torch.Tensor, removed: torch.Tensor, *, noise: float = 0.01,
                        iterations: int = 60, generator: torch.Generator | None = None) -> torch.Tensor:
    """ROAD's noisy linear imputation (Rong et al. 2022), solved on the device.

    Each removed pixel is set to the weighted mean of its 8 neighbours (direct
    neighbours 1/6, diagonal ones 1/12, renormalised at borders): the linear
    system the paper solves with a sparse solver. Here it is solved by Jacobi
    iterations as batched convolutions, started from a normalised-convolution
    guess (a Gaussian-weighted mean of the known pixels) so that a few dozen
    sweeps suffice for the scattered pixels ROAD removes. Gaussian noise of std
    ``noise`` is then added to the imputed pixels. ``removed`` is ``(B, 1, H, W)`` bool.
    """
    kernel = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]],
                          dtype=images.dtype, device=images.device)
    norm = F.conv2d(F.pad(torch.ones_like(images[:, :1]), (1, 1, 1, 1)), kernel.view(1, 1, 3, 3))
    keep = (~removed).to(images.dtype)
    support = gaussian_blur(keep, 2.0)
    guess = gaussian_blur(images * keep, 2.0) / support.clamp(min=1e-6)
    mean = (images * keep).sum((2, 3), keepdim=True) / keep.sum((2, 3), keepdim=True).clamp(min=1)
    guess = torch.where(support > 1e-3, guess, mean.expand_as(images))
    x = torch.where(removed, guess, images)
    inv_norm = 1 / norm
    for _ in range(iterations):
        x = torch.where(removed, _neighbour_mean(x, inv_norm), images)
    jitter = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
    return torch.where(removed, x + noise * jitter, images)


def _neighbour_mean(x: torch.Tensor, inv_norm: torch.Tensor) -> torch.Tensor:
    """The 8-neighbour weighted mean of every pixel (direct 1/6, diagonal 1/12, zero
    padding, times ``inv_norm`` to renormalise at borders), as sums of shifted views:
    the same numbers as the depthwise 3x3 convolution, about 3x faster on the CPU."""
    p = F.pad(x, (1, 1, 1, 1))
    direct = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
    diagonal = p[..., :-2, :-2] + p[..., :-2, 2:] + p[..., 2:, :-2] + p[..., 2:, 2:]
    return (direct / 6 + diagonal / 12) * inv_norm


def road(predict: Predict, images: torch.Tensor, relevance: torch.Tensor, targets: Any, *,
         order: str = "morf", fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
         noise: float = 0.01, seed: int = 0, iterations: int = 60,
         batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """ROAD (RemOve And Debias, Rong et al. 2022, ICML): remove the most (``morf``)
    or least (``lerf``) relevant fraction of pixels, impute them with
    :func:`noisy_linear_impute`, record the target probability. Returns
    ``(mean probability over fractions (B,), curves (B, len(fractions)))``;
    lower is better for MoRF, higher for LeRF."""
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    b, c, h, w = images.shape
    ranks = pixel_ranks(relevance if order == "morf" else -relevance).view(b, 1, h, w)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    batches = [noisy_linear_impute(images, ranks < round(f * h * w), noise=noise,
                                   iterations=iterations, generator=generator)
               for f in fractions]
    batch = torch.stack(batches, 1).reshape(-1, c, h, w)
    images_of_rows = torch.arange(b).repeat_interleave(len(fractions))
    curves = target_probability(predict, batch, targets, batch_size, images_of_rows)
    curves = curves.view(b, len(fractions))
    return curves.mean(1), curves


# ------------------------------------------------------------- similarities

def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per image of two ``(B, ...)`` maps (average ranks for ties)."""
    return _pearson(average_ranks(a.flatten(1)), average_ranks(b.flatten(1)))


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denom > 0, (a * b).sum(1) / denom.clamp(min=1e-300), torch.zeros_like(denom)).float()


def ssim(a: torch.Tensor, b: torch.Tensor, *, sigma: float = 1.5, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity per image of ``(B, H, W)`` maps (Wang et al. 2004),
    Gaussian window ``sigma``, ``K1 = 0.01``, ``K2 = 0.03``, population covariances,
    statistics over 'valid' windows only (skimage's ``structural_similarity(...,
    gaussian_weights=True, use_sample_covariance=False)``). Maps smaller than the
    window (``2 * radius + 1``, 11 pixels for ``sigma=1.5``) use the largest window
    that fits, its Gaussian truncated (skimage refuses them)."""
    radius = min(int(3.5 * sigma + 0.5), (min(a.shape[-2:]) - 1) // 2)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=a.device)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    window = (g[:, None] * g[None, :]).view(1, 1, 2 * radius + 1, 2 * radius + 1)
    a = a.float()[:, None]
    b = b.float()[:, None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def normalize_maps(relevance: torch.Tensor, *, absolute: bool = True) -> torch.Tensor:
    """Per-image min-max scaling to [0, 1] (after ``|r|`` if ``absolute``), for SSIM."""
    r = relevance.abs() if absolute else relevance
    flat = r.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo).clamp(min=1e-12)).view_as(r)
