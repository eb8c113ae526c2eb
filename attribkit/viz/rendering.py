"""Pure rendering: one attribution map (+ one image) -> an RGB array.

Everything the figures draw is computed here, without matplotlib figures, so
that what is drawn can be tested as arrays. The pipeline for one image is

1. **channels** -> one 2-D map ``m``: ``"sum"`` adds the channels (Captum's
   convention), ``"max"`` keeps, per pixel, the channel value of largest
   magnitude (with its sign; FlashTorch's "max gradients"), ``"mean"`` averages.
2. **resize**: ``m`` is resized bilinearly (half-pixel centres, as
   ``F.interpolate(..., align_corners=False)``) to the image's ``H x W``, so a
   CAM at layer resolution lines up with the picture.
3. **sign** -> the part of ``m`` that is shown, as a magnitude ``a >= 0``:

   ==================  =======================  =====================
   sign                shown                    normalised range
   ==================  =======================  =====================
   ``all``             ``m`` itself (signed)    ``[-1, 1]``
   ``positive``        ``a = max(m, 0)``        ``[0, 1]``
   ``negative``        ``a = max(-m, 0)``       ``[0, 1]``
   ``absolute_value``  ``a = |m|``              ``[0, 1]``
   ==================  =======================  =====================

4. **outlier clipping**: ``scale`` = the ``(100 - outlier_perc)``-th percentile
   of the non-zero magnitudes the sign keeps; the map is divided by ``scale``
   and clipped to its range, so the top ``outlier_perc`` % saturate instead of
   washing out everything else (a map with nothing to show stays 0).
5. **mode** -> RGB in ``[0, 1]`` (``n`` is the normalised map, ``|n|`` its
   magnitude, ``I`` the image, ``C`` the colormap):

   ====================  ========================================================
   mode                  pixel
   ====================  ========================================================
   ``heat_map``          ``C(n)`` (``C((n + 1) / 2)`` for ``all``)
   ``blended_heat_map``  ``(1 - alpha) * I + alpha * C(n)``
   ``masked_image``      ``I`` where ``|n| > threshold``, black elsewhere
   ``alpha_scaling``     ``|n| * I + (1 - |n|) * white``: the image fades out
                         where attribution is low
   ``original_image``    ``I`` (the map is ignored)
   ====================  ========================================================

Default colormaps (:data:`CMAPS`): ``all`` -> ``RdBu_r`` (blue negative, white
zero, red positive), ``positive`` -> ``Reds``, ``negative`` -> ``Blues``,
``absolute_value`` -> ``inferno``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attribkit.images import as_numpy
from attribkit.result import bilinear_resize

MODES = ("heat_map", "blended_heat_map", "masked_image", "alpha_scaling", "original_image")
SIGNS = ("all", "positive", "negative", "absolute_value")
CHANNELS = ("sum", "max", "mean")
CMAPS = {"all": "RdBu_r", "positive": "Reds", "negative": "Blues", "absolute_value": "inferno"}
NEEDS_IMAGE = ("blended_heat_map", "masked_image", "alpha_scaling", "original_image")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def reduce_channels(values: Any, channels: str = "sum") -> np.ndarray:
    """One image's map ``(C, H, W)`` or ``(H, W)`` -> ``(H, W)`` float64.

    ``channels``: ``"sum"`` over channels, ``"mean"``, or ``"max"``: per pixel
    the channel value of largest magnitude, sign kept.
    """
    _check("channels", channels, CHANNELS)
    m = np.asarray(as_numpy(values), dtype=np.float64)
    if m.ndim == 2:
        return m
    if m.ndim != 3:
        raise ValueError(f"expected one map (C, H, W) or (H, W), got shape {m.shape}")
    if channels == "sum":
        return m.sum(axis=0)
    if channels == "mean":
        return m.mean(axis=0)
    pick = np.abs(m).argmax(axis=0)
    return np.take_along_axis(m, pick[None], axis=0)[0]


def normalize_map(m: np.ndarray, sign: str = "absolute_value", outlier_perc: float = 2.0) -> np.ndarray:
    """A 2-D map -> ``[-1, 1]`` (sign ``all``) or ``[0, 1]`` (other signs).

    Divides by the ``(100 - outlier_perc)``-th percentile of the non-zero
    magnitudes that ``sign`` keeps and clips (see the module docstring).
    """
    _check("sign", sign, SIGNS)
    if not 0 <= outlier_perc < 100:
        raise ValueError(f"outlier_perc must be in [0, 100), got {outlier_perc}")
    m = np.asarray(m, dtype=np.float64)
    mag = {"all": np.abs, "absolute_value": np.abs,
           "positive": lambda v: np.maximum(v, 0.0), "negative": lambda v: np.maximum(-v, 0.0)}[sign](m)
    kept = mag[mag > 0]
    scale = float(np.percentile(kept, 100 - outlier_perc)) if kept.size else 0.0
    if scale <= 0 or not np.isfinite(scale):
        return np.zeros_like(m)
    if sign == "all":
        return np.clip(m / scale, -1.0, 1.0)
    return np.clip(mag / scale, 0.0, 1.0)


def colorize(norm: np.ndarray, sign: str = "absolute_value", cmap: str | Any | None = None) -> np.ndarray:
    """A normalised map -> ``(H, W, 3)`` colours: ``cmap((n + 1) / 2)`` for sign
    ``all``, else ``cmap(n)``; ``cmap`` defaults to :data:`CMAPS` ``[sign]``."""
    from matplotlib import colormaps

    _check("sign", sign, SIGNS)
    cm = colormaps[cmap or CMAPS[sign]] if cmap is None or isinstance(cmap, str) else cmap
    x = (norm + 1.0) / 2.0 if sign == "all" else norm
    return np.asarray(cm(x))[..., :3]


def prepare_map(values: Any, size: tuple[int, int] | None = None, *, sign: str = "absolute_value",
                outlier_perc: float = 2.0, channels: str = "sum") -> np.ndarray:
    """Steps 1-4: channels reduced, resized to ``size`` (if given), normalised."""
    m = reduce_channels(values, channels)
    if size is not None and m.shape != tuple(size):
        m = bilinear_resize(m, tuple(size))
    return normalize_map(m, sign, outlier_perc)


def render(values: Any, image: Any = None, *, mode: str = "blended_heat_map",
           sign: str = "absolute_value", cmap: str | Any | None = None, alpha: float = 0.5,
           outlier_perc: float = 2.0, threshold: float = 0.25, channels: str = "sum",
           size: tuple[int, int] | None = None) -> np.ndarray:
    """Draw one attribution map as an ``(H, W, 3)`` float32 RGB array in ``[0, 1]``.

    Args:
        values: one image's map, ``(C, H, W)`` or ``(H, W)`` (array or tensor);
            a CAM ``(1, h, w)`` is upsampled to the image.
        image: the picture, ``(H, W, 3)`` in ``[0, 1]`` (see
            :func:`attribkit.images.to_display`); needed by every mode but ``heat_map``.
        mode: ``heat_map``, ``blended_heat_map``, ``masked_image``,
            ``alpha_scaling`` or ``original_image`` (see the module docstring).
        sign: ``all``, ``positive``, ``negative`` or ``absolute_value``.
        cmap: a matplotlib colormap or its name (default by sign, :data:`CMAPS`).
        alpha: weight of the heat map in ``blended_heat_map``.
        outlier_perc: percent of the largest magnitudes that saturate.
        threshold: ``masked_image`` keeps pixels whose normalised magnitude is above it.
        channels: how ``(C, H, W)`` maps become one map: ``sum``, ``max`` or ``mean``.
        size: output ``(H, W)`` when there is no image (default: the map's size).
    """
    _check("mode", mode, MODES)
    _check("sign", sign, SIGNS)
    if image is not None:
        image = np.clip(np.asarray(as_numpy(image), dtype=np.float64), 0.0, 1.0)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be (H, W, 3) RGB in [0, 1], got shape {image.shape}")
        size = image.shape[:2]
    elif mode in NEEDS_IMAGE:
        raise ValueError(f"mode {mode!r} draws on the image: pass image=(H, W, 3)")
    if mode == "original_image":
        return image.astype(np.float32)
    norm = prepare_map(values, size, sign=sign, outlier_perc=outlier_perc, channels=channels)
    if mode == "heat_map":
        out = colorize(norm, sign, cmap)
    elif mode == "blended_heat_map":
        out = (1.0 - alpha) * image + alpha * colorize(norm, sign, cmap)
    elif mode == "masked_image":
        out = image * (np.abs(norm) > threshold)[..., None]
    else:  # alpha_scaling
        weight = np.abs(norm)[..., None]
        out = weight * image + (1.0 - weight)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def standardize_rgb(values: Any, saturation: float = 0.1, brightness: float = 0.5) -> np.ndarray:
    """A 3-channel gradient ``(3, H, W)`` as an ``(H, W, 3)`` picture (FlashTorch's
    ``standardize_and_clip``): ``clip((g - mean(g)) / std(g) * saturation + brightness, 0, 1)``,
    with the mean and standard deviation over the whole map. A map without
    three channels is repeated to grey."""
    g = np.asarray(as_numpy(values), dtype=np.float64)
    if g.ndim == 2:
        g = g[None]
    if g.shape[0] != 3:
        g = np.repeat(g.mean(axis=0, keepdims=True), 3, axis=0)
    std = g.std() or 1e-7
    out = (g - g.mean()) / std * saturation + brightness
    return np.clip(out.transpose(1, 2, 0), 0.0, 1.0).astype(np.float32)
