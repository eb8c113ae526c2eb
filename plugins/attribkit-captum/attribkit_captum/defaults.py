"""The defaults the adapter fills in where Captum needs an argument (torch only, no Captum).

- baselines: ``None`` keeps Captum's default (zeros), except for the SHAP
  methods, which need a distribution: zeros and a Gaussian-blurred copy of the
  image. Strings ``"zeros"``, ``"blur"``, ``"mean"`` (each channel's mean), a
  number, a tensor, or (SHAP methods) a list of these are accepted.
- feature masks: a ``grid x grid`` grid of cells over ``H x W`` (fewer cells
  if the image is smaller), the same for every image and channel.
- layer masks: one feature per layer position (``group="position"``), per
  channel (``"channel"``) or per neuron (``"neuron"``: Captum's default).
- Occlusion: a ``C x k x k`` window with ``k = max(1, min(H, W) // 8)`` and
  stride ``max(1, k // 2)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from attribkit.errors import InvalidOptionError

BASELINE_KINDS = ("zeros", "blur", "mean")


def blur_sigma(height: int, width: int) -> float:
    """The blur's standard deviation: 1/16 of the image side, at least 1 pixel."""
    return max(1.0, max(height, width) / 16)


def gaussian_blur(images: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images with replicate padding."""
    if images.ndim != 4:
        raise InvalidOptionError(
            f"baselines='blur' needs images (B, C, H, W), got shape {tuple(images.shape)}"
        )
    sigma = blur_sigma(*images.shape[-2:]) if sigma is None else sigma
    radius = max(1, math.ceil(3 * sigma))
    coords = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    x = images.detach()
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return x


def _one_baseline(inputs: torch.Tensor, kind: Any) -> Any:
    if isinstance(kind, str):
        if kind == "zeros":
            return torch.zeros_like(inputs)
        if kind == "blur":
            return gaussian_blur(inputs)
        if kind == "mean":
            dims = tuple(range(2, inputs.ndim))
            return inputs.detach().mean(dim=dims, keepdim=True).expand_as(inputs).clone() \
                if dims else inputs.detach().mean(1, keepdim=True).expand_as(inputs).clone()
        raise InvalidOptionError(
            f"baselines {kind!r} is not one of {', '.join(BASELINE_KINDS)}, a number or a tensor"
        )
    if isinstance(kind, numbers.Real) and not isinstance(kind, bool):
        return torch.full_like(inputs, float(kind))
    if isinstance(kind, torch.Tensor):
        return kind.to(device=inputs.device, dtype=inputs.dtype)
    raise InvalidOptionError(
        f"baselines must be None, {', '.join(map(repr, BASELINE_KINDS))}, a number or a "
        f"tensor, got {type(kind).__name__}"
    )


def baselines(inputs: torch.Tensor, spec: Any) -> Any:
    """Baselines for the non-SHAP methods: ``None`` keeps Captum's default (zeros)."""
    if spec is None or isinstance(spec, torch.Tensor):
        return spec if spec is None else spec.to(device=inputs.device, dtype=inputs.dtype)
    if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
        return float(spec)
    return _one_baseline(inputs, spec)


def baseline_distribution(image: torch.Tensor, spec: Any) -> torch.Tensor:
    """The SHAP methods' baseline distribution ``(n, ...)`` for ONE image ``(1, ...)``.

    ``None``: zeros and a blurred copy for images (zeros only otherwise); a
    kind or a number: that one baseline; a list: one baseline per item; a
    tensor: used as given (``(n, ...)`` rows, the same for every image).
    """
    if spec is None:
        spec = ["zeros", "blur"] if image.ndim == 4 else ["zeros"]
    if isinstance(spec, torch.Tensor):
        return spec.to(device=image.device, dtype=image.dtype)
    if isinstance(spec, (str, numbers.Real)):
        spec = [spec]
    if not isinstance(spec, Sequence) or not spec:
        raise InvalidOptionError(f"baselines must be a kind, a number, a tensor or a list of "
                                 f"them, got {spec!r}")
    return torch.cat([_one_baseline(image, item) for item in spec])


def grid_mask(height: int, width: int, grid: int, device: torch.device) -> torch.Tensor:
    """``(1, 1, H, W)`` feature ids ``0..n-1`` of a ``grid x grid`` grid of cells (``grid >= 1``,
    fewer cells where the image is smaller)."""
    rows_n, cols_n = min(int(grid), height), min(int(grid), width)
    rows = torch.arange(height, device=device) * rows_n // height
    cols = torch.arange(width, device=device) * cols_n // width
    return (rows[:, None] * cols_n + cols[None, :]).view(1, 1, height, width)


def feature_mask(inputs: torch.Tensor, mask: Any, grid: int) -> Any:
    """The given mask (moved to the input's device), else the grid mask."""
    if mask is not None:
        return mask.to(inputs.device) if isinstance(mask, torch.Tensor) else mask
    return grid_mask(inputs.shape[-2], inputs.shape[-1], grid, inputs.device)


def layer_mask(shape: Sequence[int], mask: Any, group: str, device: torch.device) -> Any:
    """The given layer mask, else one feature per position / channel (``None``: per neuron).

    ``group`` is ``"position"``, ``"channel"`` or ``"neuron"``; the first two need a
    layer output with channels (``len(shape) >= 2``), as :mod:`attribkit_captum.rules` checks.
    """
    if mask is not None:
        return mask.to(device) if isinstance(mask, torch.Tensor) else mask
    if group == "neuron":
        return None
    if group == "channel" or len(shape) == 2:
        ids = torch.arange(shape[1], device=device)
        return ids.view(1, shape[1], *([1] * (len(shape) - 2)))
    positions = math.prod(shape[2:])
    return torch.arange(positions, device=device).view(1, 1, *shape[2:])


def _triple(value: Any, channels: int) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral):
        return (channels, int(value), int(value))
    value = tuple(int(v) for v in value)
    return value if len(value) == 3 else (channels, *value)


def occlusion_window(inputs: torch.Tensor, window: Any, strides: Any
                     ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(sliding_window_shapes, strides)`` for Occlusion on ``(B, C, H, W)`` inputs.

    Each is ``None`` (the default), an int, ``(h, w)`` or ``(C, h, w)``.
    """
    channels, height, width = inputs.shape[1:]
    if window is None:
        k = max(1, min(height, width) // 8)
        window = (channels, k, k)
    else:
        window = _triple(window, channels)
    if strides is None:
        strides = (window[0], max(1, window[1] // 2), max(1, window[2] // 2))
    else:
        strides = _triple(strides, window[0])
    return window, strides
