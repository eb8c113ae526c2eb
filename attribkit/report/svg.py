"""Small inline SVG charts for the reports: line charts (curves) and horizontal bars."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from attribkit.report.page import esc, number

#: width allowed per character of a label at the charts' 11 px font (wider than the average
#: glyph of the usual sans-serif fonts, DejaVu Sans included)
CHAR_PX = 7.0
#: colours of the series (colour-blind friendly, Okabe and Ito's palette)
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def line_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str,
               xlabel: str, ylabel: str, xticks: Sequence[str] | None = None,
               width: int = 460, height: int = 300) -> str:
    """``series``: name -> ``(x, y)``; one polyline each, with a legend. ``xticks``
    labels the x positions 0, 1, ... instead of numbers."""
    left, right, top, bottom = 52, 130, 28, 44
    xs = [x for xv, _ in series.values() for x in xv]
    ys = [y for _, yv in series.values() for y in yv if y is not None and math.isfinite(y)]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y0, y1 = (min(0.0, min(ys)), max(ys)) if ys else (0.0, 1.0)
    if x1 <= x0:
        x1 = x0 + 1
    if y1 <= y0:
        y1 = y0 + 1

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f"<svg class=\"chart\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" "
             f"role=\"img\" aria-label=\"{esc(title)}\">",
             f"<text x=\"{left}\" y=\"16\" font-weight=\"600\">{esc(title)}</text>"]
    for t in _ticks(y0, y1):
        parts.append(f"<line class=\"grid\" x1=\"{left}\" x2=\"{width - right}\" y1=\"{py(t):.1f}\" "
                     f"y2=\"{py(t):.1f}\"/><text x=\"{left - 6}\" y=\"{py(t) + 4:.1f}\" "
                     f"text-anchor=\"end\">{t:g}</text>")
    if xticks is not None:
        positions = [(i, str(label)) for i, label in enumerate(xticks)]
    else:
        positions = [(t, f"{t:g}") for t in _ticks(x0, x1)]
    for t, label in positions:
        parts.append(f"<text x=\"{px(t):.1f}\" y=\"{height - bottom + 16}\" text-anchor=\"middle\">"
                     f"{esc(label)}</text>")
    parts.append(f"<line class=\"axis\" x1=\"{left}\" x2=\"{width - right}\" y1=\"{height - bottom}\" "
                 f"y2=\"{height - bottom}\"/><line class=\"axis\" x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" "
                 f"y2=\"{height - bottom}\"/>")
    parts.append(f"<text x=\"{(left + width - right) / 2:.0f}\" y=\"{height - 8}\" text-anchor=\"middle\">"
                 f"{esc(xlabel)}</text>")
    mid = (top + height - bottom) / 2
    parts.append(f"<text x=\"14\" y=\"{mid:.0f}\" transform=\"rotate(-90 14 {mid:.0f})\" "
                 f"text-anchor=\"middle\">{esc(ylabel)}</text>")
    for k, (name, (xv, yv)) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xv, yv)
                          if y is not None and math.isfinite(y))
        parts.append(f"<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{points}\">"
                     f"<title>{esc(name)}</title></polyline>")
        ly = top + 8 + 16 * k
        parts.append(f"<line x1=\"{width - right + 10}\" x2=\"{width - right + 28}\" y1=\"{ly}\" y2=\"{ly}\" "
                     f"stroke=\"{colour}\" stroke-width=\"3\"/><text x=\"{width - right + 32}\" "
                     f"y=\"{ly + 4}\">{esc(name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(values: Mapping[str, float], *, title: str, unit: str, reference: float | None = None,
              reference_label: str = "", width: int = 460) -> str:
    """Horizontal bars, one per name, with a dashed vertical line at ``reference``. The
    names' column is as wide as the longest name (at :data:`CHAR_PX`), the bars keep
    ``width`` minus 170 px; the chart widens instead of cutting a name."""
    right, top, row = 70, 30, 22
    left = max(170, round(CHAR_PX * max((len(n) for n in values), default=0)) + 12)
    width += left - 170
    height = top + row * max(1, len(values)) + 34
    finite = [v for v in values.values() if math.isfinite(v)]
    hi = max(finite + ([reference] if reference is not None else []) + [1e-12])
    scale = (width - left - right) / hi
    parts = [f"<svg class=\"chart\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" "
             f"role=\"img\" aria-label=\"{esc(title)}\">",
             f"<text x=\"8\" y=\"16\" font-weight=\"600\">{esc(title)}</text>"]
    for i, (name, value) in enumerate(values.items()):
        y = top + i * row
        w = value * scale if math.isfinite(value) else 0
        parts.append(f"<text x=\"{left - 6}\" y=\"{y + 14}\" text-anchor=\"end\">{esc(name)}</text>"
                     f"<rect x=\"{left}\" y=\"{y + 3}\" width=\"{w:.1f}\" height=\"{row - 6}\" "
                     f"fill=\"{PALETTE[0]}\"><title>{esc(name)}: {number(value, 2)} {esc(unit)}</title></rect>"
                     f"<text x=\"{left + w + 4:.1f}\" y=\"{y + 14}\">{number(value, 2)}</text>")
    bottom = top + row * max(1, len(values))
    parts.append(f"<line class=\"axis\" x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{bottom}\"/>")
    if reference is not None:
        x = left + reference * scale
        parts.append(f"<line x1=\"{x:.1f}\" x2=\"{x:.1f}\" y1=\"{top - 4}\" y2=\"{bottom + 4}\" stroke=\"#d55e00\" "
                     f"stroke-dasharray=\"4 3\" stroke-width=\"1.5\"/><text x=\"{x:.1f}\" y=\"{bottom + 18}\" "
                     f"text-anchor=\"middle\" fill=\"#d55e00\">{esc(reference_label)}</text>")
    parts.append(f"<text x=\"{width - 8}\" y=\"{height - 6}\" text-anchor=\"end\">{esc(unit)}</text></svg>")
    return "".join(parts)
