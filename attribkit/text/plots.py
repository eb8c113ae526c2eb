"""Token attributions as matplotlib figures: :func:`token_figure` (``ak.show`` of a
:class:`~attribkit.text.result.TokenAttribution`) and :func:`compare_texts`
(``ak.compare`` on texts). Colours are those of :mod:`attribkit.text.views`.

Tokens are drawn in a monospace font on cells as wide as their text, so a line of
tokens reads as the text does; a text longer than ``width`` characters wraps.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attribkit.text.views import NEGATIVE, POSITIVE, ZERO, TokenRow, scales, shown_token, token_rows

CHAR_INCH = 0.075  # the width of one monospace character at FONT_SIZE points
FONT_SIZE = 9
LINE_INCH = 0.3
DIM = (0.93, 0.93, 0.93)


def diverging_cmap() -> Any:
    """The views' diverging colour map as a matplotlib colormap (blue, white, red over ``[-1, 1]``)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "attribkit_tokens", [tuple(c / 255 for c in rgb) for rgb in (NEGATIVE, ZERO, POSITIVE)])


def _cmap(cmap: str | Any | None) -> Any:
    if cmap is None:
        return diverging_cmap()
    if isinstance(cmap, str):
        from matplotlib import colormaps

        return colormaps[cmap]
    return cmap


def _wrap(row: TokenRow, width: int) -> list[list[int]]:
    """Token indices of each drawn line (a new line when ``width`` characters are reached)."""
    lines: list[list[int]] = [[]]
    used = 0
    for t, token in enumerate(row.tokens):
        size = len(shown_token(token)) + 1
        if lines[-1] and used + size > width:
            lines.append([])
            used = 0
        lines[-1].append(t)
        used += size
    return lines


def draw_lines(ax: Any, rows: Sequence[tuple[str, TokenRow, np.ndarray, float]], cmap: Any,
               width: int = 90) -> None:
    """Draw ``(label, row, values, scale)`` as lines of tokens on ``ax``: a cell per token
    coloured by ``cmap`` at ``values / scale`` (grey when dimmed), the label as the
    line's y tick. Cells are :class:`~matplotlib.patches.Rectangle` patches, in token
    order (``ax.patches[k]``)."""
    from matplotlib.patches import Rectangle

    y = 0
    ticks, labels = [], []
    widest = 1
    for label, row, values, scale in rows:
        ticks.append(y + 0.5)
        labels.append(label)
        for line in _wrap(row, width):
            x = 0.0
            for t in line:
                text = shown_token(row.tokens[t])
                colour = DIM if row.dimmed[t] else cmap(0.5 + 0.5 * _norm(values[t], scale))[:3]
                ax.add_patch(Rectangle((x, y + 0.1), len(text) + 0.6, 0.8, facecolor=colour, edgecolor="none"))
                ink = "0.55" if row.dimmed[t] else ("white" if sum(colour) < 1.4 else "black")
                ax.text(x + 0.3, y + 0.5, text, fontsize=FONT_SIZE, family="monospace", va="center",
                        ha="left", color=ink)
                x += len(text) + 1
            widest = max(widest, int(x))
            y += 1
        if row.outputs is not None:
            ax.text(x, y - 0.5, "→ " + " ".join(shown_token(o) for o in row.outputs), fontsize=FONT_SIZE,
                    family="monospace", va="center", ha="left", color="0.3")
            widest = max(widest, int(x) + 3 + sum(len(shown_token(o)) + 1 for o in row.outputs))
        y += 0.3
    ax.set_xlim(0, widest)
    ax.set_ylim(y, 0)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)


def _norm(v: float, scale: float) -> float:
    return float(np.clip(v / scale, -1.0, 1.0)) if scale > 0 and np.isfinite(v) else 0.0


def _colorbar(fig: Figure, ax: Any, cmap: Any, scale: float, label: str) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    scale = scale if scale > 0 else 1.0
    bar = fig.colorbar(ScalarMappable(Normalize(-scale, scale), cmap), ax=ax, location="right",
                       shrink=0.9, aspect=10, pad=0.01)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def token_figure(result: Any, *, limit: int = 16, cmap: str | Any | None = None, title: str | None = None,
                 titles: bool = True, matrix: bool | None = None, matrix_limit: int = 4,
                 width: int = 90) -> Figure:
    """A figure of a token attribution: a line of tokens per text (the first ``limit``),
    coloured by value on the result's diverging scale (special tokens and tokens without a
    value grey), labelled with the text's number and explained class; for a continuation
    (``matrix`` default) also the output x input token matrix of the first
    ``matrix_limit`` texts as heat maps with token labels (one scale for all of them).

    ``cmap``: a matplotlib colour map (name or object) read over ``[-1, 1]`` of the scale
    (default blue-white-red, the HTML's colours). ``title``: default the method and the
    number of texts. The token axes is ``fig.axes[0]``, the matrices follow (an
    ``AxesImage`` each), then the colour bars.
    """
    scale, matrix_scale = scales(result)
    rows = token_rows(result, limit)
    colours = _cmap(cmap)
    matrices = [r for r in rows if r.matrix is not None and r.matrix.size][:matrix_limit]
    if matrix is False:
        matrices = []
    n_lines = sum(len(_wrap(r, width)) for r in rows)
    widest = max([len(" ".join(shown_token(t) for t in r.tokens + (r.outputs or []))) for r in rows] + [20])
    heights = [n_lines * LINE_INCH + 0.3 * len(rows)]
    heights += [max(1.2, 0.28 * r.matrix.shape[0]) + 0.09 * max(len(shown_token(t)) for t in r.tokens)
                for r in matrices]
    fig = Figure(figsize=(min(width, widest) * CHAR_INCH + 2.5, sum(heights) + 0.8), layout="constrained")
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    ax = fig.add_subplot(grid[0])
    draw_lines(ax, [(f"{r.index}" + (f" · {r.label}" if r.label else ""), r, r.values, scale) for r in rows],
               colours, width)
    if len(result.tokens) > len(rows):
        ax.set_xlabel(f"… {len(result.tokens) - len(rows)} more text(s)", fontsize=8)
    matrix_axes = []
    for k, row in enumerate(matrices):
        mx = fig.add_subplot(grid[k + 1])
        shown = np.where(row.dimmed[None, :], np.nan, row.matrix)
        mx.imshow(shown, cmap=colours, vmin=-(matrix_scale or 1.0), vmax=matrix_scale or 1.0,
                  aspect="auto", interpolation="nearest")
        mx.set_xticks(range(len(row.tokens)), [shown_token(t) for t in row.tokens], rotation=90,
                      fontsize=7, family="monospace")
        mx.set_yticks(range(len(row.outputs or [])), [shown_token(t) for t in row.outputs or []],
                      fontsize=7, family="monospace")
        mx.set_ylabel(f"text {row.index}: output", fontsize=8)
        matrix_axes.append(mx)
    _colorbar(fig, ax, colours, scale, "value")
    if matrix_axes:
        _colorbar(fig, matrix_axes, colours, matrix_scale, "per output token")
    heading = title
    if heading is None and titles:
        heading = f"{result.method} · {len(result.tokens)} text(s)"
        if result.meta.get("kind") == "continuation":
            heading += f" · continuation {result.meta.get('score', '')}".rstrip()
    if heading:
        fig.suptitle(heading, fontsize=10)
    return fig


def compare_texts(model: Any, texts: Any, methods: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
                  target: Any = None, *, batch_size: int | None = None, limit: int = 8,
                  cmap: str | Any | None = None, title: str | None = None, width: int = 90,
                  **explain_options: Any) -> Figure:
    """Explain ``texts`` with each of ``methods`` and draw them side by side: for each
    text, a line of tokens per method, each method on its own scale (the colour bar is
    in units of each method's largest ``|value|``). ``methods``: names or ``(name,
    options)`` pairs; ``None``: every registered method with a text kernel, skipping
    (with a warning) those that fail. Other arguments are as in :func:`attribkit.explain`
    (``tokenizer=`` and the text options go to every method)."""
    from attribkit.api import explain
    from attribkit.api import methods as registered

    skip_failures = methods is None
    if methods is None:
        methods = [spec.name for spec in registered() if spec.text is not None]
    results = []
    for entry in methods:
        name, options = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        try:
            results.append(explain(model, texts, target, method=name, batch_size=batch_size,
                                   **explain_options, **options))
        except Exception as exc:
            if not skip_failures:
                raise
            warnings.warn(f"compare: skipping {name}: {exc}", stacklevel=2)
    return compare_figure(results, limit=limit, cmap=cmap, title=title, width=width)


def compare_figure(results: Sequence[Any], *, limit: int = 8, cmap: str | Any | None = None,
                   title: str | None = None, width: int = 90) -> Figure:
    """Token attributions of the same texts by several methods: per text, a line per
    result labelled with its method, each result on its own scale."""
    if not results:
        raise ValueError("compare: no token attribution to draw")
    colours = _cmap(cmap)
    per_method = [(r.method, token_rows(r, limit), scales(r)[0]) for r in results]
    lines = [(f"{rows[i].index} · {method}" if m == 0 else method, rows[i], rows[i].values, scale)
             for i in range(len(per_method[0][1])) for m, (method, rows, scale) in enumerate(per_method)]
    n_lines = sum(len(_wrap(row, width)) for _, row, _, _ in lines)
    widest = max([len(" ".join(shown_token(t) for t in row.tokens + (row.outputs or [])))
                  for _, row, _, _ in lines] + [20])
    fig = Figure(figsize=(min(width, widest) * CHAR_INCH + 3.0, n_lines * LINE_INCH + 0.3 * len(lines) / 2 + 1.0),
                 layout="constrained")
    ax = fig.add_subplot()
    draw_lines(ax, lines, colours, width)
    _colorbar(fig, ax, colours, 1.0, "value / the method's largest |value|")
    fig.suptitle(title if title is not None else f"{len(results)} methods · "
                 f"{min(limit, len(results[0].tokens))} text(s)", fontsize=10)
    return fig
