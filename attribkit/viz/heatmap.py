"""The first, one-call heat map writer (kept for ``attribkit demo``); built on
:func:`attribkit.viz.rendering.render`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attribkit.viz.rendering import prepare_map, render


def heatmap_2d(values: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image's map ``(C, H, W)`` -> ``(H, W)`` in ``[0, 1]``: channels summed,
    resized (bilinear) to ``size`` if given, absolute value, top 1 % saturated."""
    return prepare_map(values, size, sign="absolute_value", outlier_perc=1.0)


def save_heatmap(path: str | Path, values: np.ndarray, image: np.ndarray | None = None,
                 cmap: str = "inferno", alpha: float = 0.55) -> Path:
    """Write a PNG of ``values`` (``(C, H, W)``), blended over ``image`` (``(H, W, 3)``) if given."""
    from attribkit.viz.figures import save

    mode = "heat_map" if image is None else "blended_heat_map"
    rgb = render(values, image, mode=mode, sign="absolute_value", cmap=cmap, alpha=alpha, outlier_perc=1.0)
    return save(rgb, path)


__all__ = ["heatmap_2d", "save_heatmap"]
