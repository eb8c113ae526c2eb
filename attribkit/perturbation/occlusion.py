"""Occlusion (Zeiler & Fergus 2014), through ``predict`` only."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from attribkit.errors import InvalidOptionError
from attribkit.perturbation.masks import masked_scores
from attribkit.perturbation.runner import forward_kernel


def _pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise InvalidOptionError(f"occlusion {name} must be a positive int or (h, w), got {value!r}")
    return pair


def window_grid(size: tuple[int, int], window: Any, stride: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(window, stride)`` as ``(h, w)`` pairs; defaults: ``min(H, W) // 8`` and half of it."""
    if window is None:
        k = max(1, min(size) // 8)
        window = (k, k)
    window = _pair(window, "window")
    if window[0] > size[0] or window[1] > size[1]:
        raise InvalidOptionError(f"occlusion window {window} is larger than the images {size}")
    stride = (max(1, window[0] // 2), max(1, window[1] // 2)) if stride is None else _pair(stride, "stride")
    return window, stride


def window_starts(size: int, window: int, stride: int) -> range:
    """Window offsets ``0, s, 2s, ...`` up to the first window that reaches the
    image's end: ``ceil((size - window) / stride) + 1`` of them; the last one
    is clipped at the border, so every pixel is covered (as in Captum)."""
    return range(0, -(-(size - window) // stride) * stride + 1, stride)


def window_masks(size: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """``(P, 1, H, W)`` keep-masks, 0 inside window ``p``, in row-major order."""
    (h, w), (kh, kw), (sh, sw) = size, window, stride
    ys, xs = window_starts(h, kh, sh), window_starts(w, kw, sw)
    masks = torch.ones(len(ys) * len(xs), 1, h, w)
    for p, (y, x) in enumerate((y, x) for y in ys for x in xs):
        masks[p, :, y:y + kh, x:x + kw] = 0
    return masks


@forward_kernel
def occlusion(predict, inputs, target, *, window: Any, stride: Any, baseline: float) -> torch.Tensor:
    """Occlusion: slide a ``window`` over the image with ``stride``, set the pixels
    under it (all channels) to ``baseline`` and record the drop of the target's score,
    ``d_p = f(x) - f(x with window p occluded)``. A pixel's attribution is the mean
    of ``d_p`` over the windows that cover it (as Captum's ``Occlusion``, whose
    window grid this follows: the last row and column of windows are clipped
    at the border). All windows of all images are scored in batched
    calls. Returns ``(B, 1, H, W)``.

    Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks".
    """
    size = tuple(inputs.shape[-2:])
    window, stride = window_grid(size, window, stride)
    masks = window_masks(size, window, stride)
    drops = target.clean_scores[:, None] - masked_scores(predict, inputs, masks, target, baseline=baseline)
    rows = len(window_starts(size[0], window[0], stride[0]))
    grid = drops.view(len(inputs), 1, rows, -1).to(inputs.dtype)
    ones = torch.ones(1, 1, *window, dtype=inputs.dtype, device=inputs.device)
    # sum of d_p over the windows covering each pixel, and how many cover it
    total = F.conv_transpose2d(grid, ones, stride=stride)[..., :size[0], :size[1]]
    counts = F.conv_transpose2d(torch.ones_like(grid[:1]), ones, stride=stride)[..., :size[0], :size[1]]
    return total / counts
