"""Turning attribution maps into pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attribkit.result import bilinear_resize


def heatmap_2d(values: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image's map ``(C, H, W)`` -> ``(H, W)`` in ``[0, 1]``.

    Channels are combined by the sum of absolute values, the map optionally
    resized (bilinear) to ``size``, and scaled by its 99th percentile.
    """
    m = np.abs(np.asarray(values, dtype=np.float64))
    m = m.sum(axis=0) if m.ndim == 3 else m
    if size is not None and m.shape != tuple(size):
        m = bilinear_resize(m, size)
    top = np.percentile(m, 99)
    return np.clip(m / top, 0, 1) if top > 0 else np.zeros_like(m)


def save_heatmap(path: str | Path, values: np.ndarray, image: np.ndarray | None = None,
                 cmap: str = "inferno", alpha: float = 0.55) -> Path:
    """Write a PNG of ``values`` (``(C, H, W)``), blended over ``image`` (``(H, W, 3)``) if given."""
    from matplotlib import colormaps
    from matplotlib.image import imsave

    size = image.shape[:2] if image is not None else None
    heat = colormaps[cmap](heatmap_2d(values, size))[..., :3]
    if image is not None:
        heat = (1 - alpha) * np.clip(image, 0, 1) + alpha * heat
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, np.clip(heat, 0, 1))
    return path
