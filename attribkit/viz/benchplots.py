"""Benchmark plots from plain data (dicts of numbers and arrays), for the runner's report.

- :func:`plot_speed`: time per method as bars, the floor (e.g. one forward +
  backward pass, the least a gradient method can cost) as a dashed line.
- :func:`plot_curves`: deletion / insertion curves, one line per method, with
  the area under each curve in the legend.
- :func:`plot_metric_table`: methods x metrics as a coloured table, colours
  scaled per metric (best = 1) and the raw values written in the cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

ArrayLike = Sequence[float] | np.ndarray
LABEL_CHAR_IN = 0.085  # inches per character of a tick label at the default 10 pt, a little over DejaVu Sans's


def plot_speed(times: Mapping[str, float | ArrayLike], *, floor: float | None = None,
               floor_label: str = "floor", unit: str = "ms", title: str | None = None,
               log: bool = False) -> Figure:
    """Horizontal bars: the time of each method, fastest on top.

    The figure widens with the longest name, so that names are never cut and the
    bars keep about 4 inches.

    Args:
        times: method -> one time or several repeats (the bar is the median,
            the whisker spans the minimum to the maximum).
        floor: a reference time drawn as a dashed vertical line (with its value
            in the legend), e.g. a forward + backward pass of the model.
        unit: the unit of the numbers, for the axis label.
        log: logarithmic time axis.
    """
    names = list(times)
    runs = [np.atleast_1d(np.asarray(times[n], dtype=float)) for n in names]
    medians = np.array([np.median(r) for r in runs])
    order = np.argsort(medians)[::-1]  # barh draws bottom-up: fastest ends on top
    # the names' column grows with the longest name (peers in brackets make long ones): the bars keep ~4 in
    label_in = LABEL_CHAR_IN * max((len(n) for n in names), default=0)
    fig = Figure(figsize=(max(6.0, 4.6 + label_in), 0.45 * len(names) + 1.2), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(names))
    low = np.array([medians[k] - runs[k].min() for k in order])
    high = np.array([runs[k].max() - medians[k] for k in order])
    has_spread = bool((low + high).any())
    ax.barh(y, medians[order], xerr=np.vstack([low, high]) if has_spread else None,
            color="tab:blue", capsize=3)
    ax.set_yticks(y, [names[k] for k in order])
    for yi, k in zip(y, order):
        ax.annotate(f"{medians[k]:.3g}", (runs[k].max(), yi), xytext=(4, 0),
                    textcoords="offset points", va="center", fontsize=8)
    if floor is not None:
        ax.axvline(floor, color="tab:red", linestyle="--", label=f"{floor_label} ({floor:.3g} {unit})")
        ax.legend(loc="lower right", fontsize=8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"time ({unit})")
    if title:
        ax.set_title(title)
    return fig


def curve_auc(y: ArrayLike, x: ArrayLike | None = None) -> float:
    """Area under a curve by the trapezoid rule (``x`` default: evenly from 0 to 1)."""
    y = np.asarray(y, dtype=float)
    x = np.linspace(0.0, 1.0, len(y)) if x is None else np.asarray(x, dtype=float)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def _curve_axes(ax: Any, curves: Mapping[str, ArrayLike], x: ArrayLike | None, kind: str,
                band: bool | None) -> None:
    band = len(curves) <= 4 if band is None else band
    for name, ys in curves.items():
        ys = np.asarray(ys, dtype=float)
        mean = ys.mean(axis=0) if ys.ndim == 2 else ys
        xs = np.linspace(0.0, 1.0, len(mean)) if x is None else np.asarray(x, dtype=float)
        (line,) = ax.plot(xs, mean, label=f"{name} (AUC {curve_auc(mean, xs):.3f})")
        if band and ys.ndim == 2 and len(ys) > 1:
            spread = ys.std(axis=0)
            ax.fill_between(xs, mean - spread, mean + spread, color=line.get_color(), alpha=0.15)
    verb = {"deletion": "deleted", "insertion": "inserted"}.get(kind, "perturbed")
    ax.set_xlabel(f"fraction of pixels {verb}")
    ax.set_ylabel("score of the explained class")
    ax.set_title(kind)
    ax.legend(fontsize=7 if len(curves) > 6 else 8, ncol=2 if len(curves) > 10 else 1)


def plot_curves(curves: Mapping[str, ArrayLike] | Mapping[str, Mapping[str, ArrayLike]], *,
                x: ArrayLike | None = None, kind: str = "deletion", band: bool | None = None,
                title: str | None = None) -> Figure:
    """Deletion / insertion curves per method.

    Args:
        curves: method -> scores along the curve (1-D, or 2-D images x steps:
            the mean is drawn, with a +-1 std band), or kind -> such a mapping
            (``{"deletion": {...}, "insertion": {...}}``: one panel per kind).
        x: the fractions of pixels at each step (default: evenly 0 to 1).
        kind: the panel title for a flat mapping.
        band: draw the +-1 std band of 2-D curves (default: with at most 4 methods).

    The legend gives each method's area under its (mean) curve: lower is
    better for deletion, higher for insertion.
    """
    nested = all(isinstance(v, Mapping) for v in curves.values())
    panels = dict(curves) if nested else {kind: curves}
    fig = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, panel) in zip(axes, panels.items()):
        _curve_axes(ax, panel, x, name, band)
    if title:
        fig.suptitle(title)
    return fig


def metric_colours(table: np.ndarray, higher_is_better: Sequence[bool]) -> np.ndarray:
    """Scale each column of ``table`` to ``[0, 1]`` with 1 the best method
    (the highest value, or the lowest where lower is better); NaN stays NaN."""
    table = np.asarray(table, dtype=float)
    out = np.full_like(table, np.nan)
    for j, better_high in enumerate(higher_is_better):
        col = table[:, j]
        finite = np.isfinite(col)
        if not finite.any():
            continue
        lo, hi = col[finite].min(), col[finite].max()
        scaled = (col - lo) / (hi - lo) if hi > lo else np.where(finite, 1.0, np.nan)
        out[:, j] = scaled if better_high else 1.0 - scaled
    return out


def plot_metric_table(table: Mapping[str, Mapping[str, float]], *,
                      higher_is_better: Mapping[str, bool] | None = None, fmt: str = "{:.3g}",
                      cmap: str = "viridis", title: str | None = None) -> Figure:
    """Methods x metrics as a heat map with the values written in the cells.

    Args:
        table: method -> metric -> value (missing or NaN cells are left blank).
        higher_is_better: metric -> whether higher is better (default True);
            colours are scaled per metric so that the best method is 1.
        fmt: how the values are written.
    """
    rows = list(table)
    cols = list(dict.fromkeys(k for r in rows for k in table[r]))
    values = np.array([[float(table[r].get(c, np.nan)) for c in cols] for r in rows])
    better = [(higher_is_better or {}).get(c, True) for c in cols]
    colours = np.ma.masked_invalid(metric_colours(values, better))
    fig = Figure(figsize=(1.3 * len(cols) + 2.0, 0.5 * len(rows) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.imshow(colours, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), [c + ("" if b else " (lower better)") for c, b in zip(cols, better)],
                  rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(values[i, j]):
                dark = colours[i, j] is not np.ma.masked and colours[i, j] < 0.5
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    if title:
        ax.set_title(title)
    return fig
