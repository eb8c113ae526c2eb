"""The unified visualiser (matplotlib, headless-safe).

- :mod:`~attribkit.viz.rendering`: pure functions, map (+ image) -> RGB array.
- :mod:`~attribkit.viz.figures`: :func:`show`, :func:`show_panels`, :func:`save`.
- :mod:`~attribkit.viz.grids`: :func:`compare` (methods), :func:`compare_models`.
- :mod:`~attribkit.viz.benchplots`: speed bars, deletion/insertion curves, metric tables.
"""

from attribkit.viz.benchplots import curve_auc, plot_curves, plot_metric_table, plot_speed
from attribkit.viz.grids import compare, compare_models
from attribkit.viz.figures import save, show, show_panels
from attribkit.viz.rendering import (
    CMAPS,
    MODES,
    SIGNS,
    colorize,
    normalize_map,
    reduce_channels,
    render,
    standardize_rgb,
)

__all__ = [
    "CMAPS", "MODES", "SIGNS", "colorize", "compare", "compare_models", "curve_auc",
    "normalize_map", "plot_curves", "plot_metric_table", "plot_speed",
    "reduce_channels", "render", "save", "show", "show_panels",
    "standardize_rgb",
]
