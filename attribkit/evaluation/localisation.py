"""Localisation metrics (attribkit's and those Quantus names), batched.

Localisation metrics compare the relevance with a ground-truth mask ``s``
(``(B, H, W)`` bool: the object's box or segmentation); ``a`` is the relevance after :func:`preprocess`.
Boxes become masks with :func:`box_masks` (``ak.evaluate(..., boxes=...)``). The
energy-based pointing game of Score-CAM (Wang et al. 2020, CVPR workshops: the share of
the map's positive energy inside the box) is :func:`relevance_mass_accuracy`.
"""

from __future__ import annotations

from typing import Any

import torch

from attribkit.evaluation import functional as M
from attribkit.evaluation.base import MetricInput, MetricResult
from attribkit.evaluation.defaults import scaled_count
from attribkit.evaluation.rows import (
    average_ranks,
    descending_ranks,
    generator_for,
    preprocess,
)
from attribkit.evaluation.scoring import class_indices


def _masks(data: MetricInput) -> torch.Tensor:
    if data.masks is None:
        raise ValueError("this metric needs ground-truth masks")
    return data.masks.to(data.relevance.device).flatten(1).bool()


def _nan_where_empty(score: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.where(s.sum(1) > 0, score, torch.full_like(score, float("nan")))


def attribution_localisation(data: MetricInput, *, weighted: bool = False, max_size: float = 1.0,
                             positive_attributions: bool = False, abs: bool = True, normalise: bool = True,
                             quantus_compat: bool = False) -> MetricResult:
    """Attribution localisation (Kohlbrenner et al. 2020, "Towards Best Practice in
    Explaining Neural Network Decisions with LRP", IJCNN).

    ``mu = sum_{i in s} a_i / (sum_i a_i + 1e-9)`` (with ``positive_attributions``,
    over ``max(a, 0)``); ``weighted`` multiplies by the mask's share of the image,
    ``|s| / HW``. NaN for an empty mask or ``mu > 1``. Higher is better.
    ``max_size`` is Quantus's warning threshold and changes nothing.
    Quantus weights by ``|s|`` over the size of the *input batch without its first
    two images* (``x_batch[2:].size``); ``quantus_compat=True`` does that.
    """
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)
    if positive_attributions:
        a = a.clamp(min=0)
    s = _masks(data)
    mu = (a * s).sum(1) / (a.sum(1) + 1e-9)
    mu = torch.where(mu > 1, torch.full_like(mu, float("nan")), _nan_where_empty(mu, s))
    if weighted:
        if quantus_compat:
            size = max(0, len(a) - 2) * data.inputs[0].numel()
        else:
            size = a.shape[1]
        mu = mu * s.sum(1) / size
    return MetricResult(mu.float())


def top_k_intersection(data: MetricInput, *, k: int | None = None, concept_influence: bool = False,
                       abs: bool = False, normalise: bool = True) -> MetricResult:
    """Top-k intersection (Theiner, Müller-Budack & Ewerth 2021, "Interpretable
    Semantic Photo Geolocation", WACV): the share of the ``k`` most relevant pixels
    inside the mask; with ``concept_influence``, times ``HW / |s|``. Higher is better.
    ``k=None``: 2 % of the pixels (Quantus's 1000 at 224 x 224, scaled by the pixel count)."""
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)
    s = _masks(data)
    k = scaled_count(k, a.shape[1], 1000, "k")
    top = descending_ranks(a) < k
    score = (top & s).sum(1).double() / k
    if concept_influence:
        score = score * a.shape[1] / s.sum(1)
    return MetricResult(_nan_where_empty(score, s).float())


def auc(data: MetricInput, *, abs: bool = False, normalise: bool = True) -> MetricResult:
    """AUC (Fawcett 2006, "An Introduction to ROC Analysis", Pattern Recognition
    Letters 27): the area under the ROC curve of the relevance as a score for
    "pixel in the mask", computed as the Mann-Whitney statistic with mid-ranks for
    ties, ``(sum of the mask pixels' ranks - n+(n+ + 1)/2) / (n+ n-)`` (equal to
    scikit-learn's ``roc_curve`` + ``auc``). Higher is better; NaN for an empty mask."""
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)
    s = _masks(data)
    ranks = average_ranks(a) + 1
    pos = s.sum(1).double()
    neg = s.shape[1] - pos
    u = (ranks * s).sum(1) - pos * (pos + 1) / 2
    score = u / (pos * neg)
    return MetricResult(_nan_where_empty(score, s).float())


def focus_scores(relevance: torch.Tensor, quadrants: torch.Tensor) -> torch.Tensor:
    """Focus of ``(B, H, W)`` maps of 2x2 mosaics, ``quadrants`` ``(B, 4)`` bool (top-left,
    top-right, bottom-left, bottom-right hold the explained class): positive relevance
    in those quadrants / all positive relevance (``+ 1e-9``)."""
    r = relevance.double().clamp(min=0)
    h, w = r.shape[-2:]
    hh, hw = h // 2, w // 2
    q = quadrants.double().to(r.device)
    weight = torch.zeros_like(r)
    weight[:, :hh, :hw] = q[:, 0, None, None]
    weight[:, :hh, hw:] = q[:, 1, None, None]
    weight[:, hh:, :hw] = q[:, 2, None, None]
    weight[:, hh:, hw:] = q[:, 3, None, None]
    return (weight * r).flatten(1).sum(1) / (r.flatten(1).sum(1) + 1e-9)


def mosaics(inputs: torch.Tensor, targets: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One 2x2 mosaic per image (``(B, C, 2H, 2W)``): the image, another image explained
    as the same class (itself when there is none), and two explained as other classes
    (any two when there are none), in random quadrants. Returns the mosaics and the
    ``(B, 4)`` quadrants holding the image's class."""
    b = len(inputs)
    gen = generator_for(seed)
    t = targets.cpu()
    same = (t[None, :] == t[:, None]) & ~torch.eye(b, dtype=torch.bool)
    keys = torch.rand(b, b, generator=gen)
    partner = torch.where(same.any(1), torch.where(same, keys, -1.0).argmax(1), torch.arange(b))
    other = t[None, :] != t[:, None]
    keys = torch.where(other, torch.rand(b, b, generator=gen), -1.0)
    first = keys.argmax(1)
    rows = torch.arange(b)
    keys[rows, first] = torch.where(other.sum(1) > 1, -1.0, keys[rows, first])  # another one if any
    second = keys.argmax(1)
    chosen = torch.stack([torch.arange(b), partner, first, second], 1)  # (B, 4): two of the class first
    order = torch.rand(b, 4, generator=gen).argsort(1)  # a random quadrant for each
    tiles = chosen.gather(1, order)
    quadrants = order < 2
    x = inputs[tiles.to(inputs.device)]  # (B, 4, C, H, W)
    top = torch.cat([x[:, 0], x[:, 1]], -1)
    bottom = torch.cat([x[:, 2], x[:, 3]], -1)
    return torch.cat([top, bottom], -2), quadrants


def focus(data: MetricInput, *, seed: int = 0, abs: bool = False, normalise: bool = True) -> MetricResult:
    """Focus (Arias-Duart et al. 2022, "Focus! Rating XAI Methods and Finding Biases",
    FUZZ-IEEE).

    Each image becomes a 2x2 mosaic with one more image of its class and two of
    other classes (:func:`mosaics`, random positions, seeded); the method explains
    the mosaic for the image's class, and the score is the share of the positive
    relevance that falls on the two quadrants of that class
    (:func:`focus_scores`; Quantus takes mosaics and their quadrants from the
    caller and computes the same). Higher is better; 0.5 is chance.
    """
    targets = class_indices(data.targets, "focus")
    mosaic, quadrants = mosaics(data.inputs, targets, seed)
    rel = data.explain(data.model, mosaic, targets)
    rel = preprocess(rel, abs=abs, normalise=normalise)
    return MetricResult(focus_scores(rel, quadrants).float())


# ------------------------------------------------------------ CLEVR-XAI and the pointing game

def pointing_game(data: MetricInput) -> MetricResult:
    """Share of images whose most relevant pixel is inside the evidence mask."""
    return MetricResult(M.pointing_game(data.relevance, data.masks.to(data.relevance.device)))


def relevance_mass_accuracy(data: MetricInput) -> MetricResult:
    """Positive relevance inside the mask / all positive relevance (CLEVR-XAI)."""
    return MetricResult(M.relevance_mass_accuracy(data.relevance, data.masks.to(data.relevance.device)))


def relevance_rank_accuracy(data: MetricInput) -> MetricResult:
    """Share of the top-|mask| pixels inside the mask (CLEVR-XAI)."""
    return MetricResult(M.relevance_rank_accuracy(data.relevance, data.masks.to(data.relevance.device)))


# ------------------------------------------------------------------------- boxes

def box_masks(boxes: Any, height: int, width: int) -> torch.Tensor:
    """``(N, H, W)`` bool evidence masks of x1y1x2y2 boxes in pixels: pixel ``(y, x)`` lies
    in a box when its centre ``(x + 0.5, y + 0.5)`` does, ``x1 <= x + 0.5 < x2`` and
    ``y1 <= y + 0.5 < y2`` (an integer box ``[x1, x2)`` covers columns ``x1..x2-1``).

    ``boxes``: ``(4,)``, ``(N, 4)``, or a list of ``(K_i, 4)`` per image (rows image-major,
    as ``ak.Box`` with several boxes per image expands). ``InputError`` for another shape,
    a non-finite box or one with ``x2 <= x1`` or ``y2 <= y1``."""
    from attribkit.errors import InputError

    if isinstance(boxes, (list, tuple)) and boxes and all(hasattr(b, "shape") and len(b.shape) == 2
                                                          for b in boxes):
        boxes = torch.cat([torch.as_tensor(b).reshape(-1, 4) for b in boxes])
    try:
        b = torch.as_tensor(boxes).detach().double().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"boxes must be numbers x1y1x2y2 (a tensor, array or sequence), got "
                         f"{type(boxes).__name__}") from exc
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"boxes must be x1y1x2y2 of shape (4,), (N, 4) or a list of (K, 4), got shape "
                         f"{tuple(b.shape)}")
    if not bool(torch.isfinite(b).all()) or bool(((b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])).any()):
        raise InputError("boxes must be finite x1y1x2y2 with x2 > x1 and y2 > y1 (pixels)")
    xs = torch.arange(width, dtype=torch.float64) + 0.5
    ys = torch.arange(height, dtype=torch.float64) + 0.5
    inside_x = (xs[None, :] >= b[:, 0:1]) & (xs[None, :] < b[:, 2:3])  # (N, W)
    inside_y = (ys[None, :] >= b[:, 1:2]) & (ys[None, :] < b[:, 3:4])  # (N, H)
    return inside_y[:, :, None] & inside_x[:, None, :]
