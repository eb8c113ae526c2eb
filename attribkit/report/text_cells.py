"""The pieces of the text report: highlighted tokens, colour bars, the output x input matrix.

Values are coloured on a diverging scale (matplotlib's ``RdBu_r``: blue negative,
white zero, red positive) whose ends are ``-scale`` and ``+scale``; each method
has its own scale (the largest magnitude of its shown token values), and its
matrices their own (the largest magnitude of its per-output-token values).
Everything here is plain HTML and CSS: the page reads without JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from attribkit.report.page import colormap_lut, esc, gradient_css, number

#: the diverging colour map of token values
CMAP = "RdBu_r"
#: above this fraction of the scale a token's text is drawn white on its colour
LIGHT_TEXT = 0.6

CSS = """
.text-report .tokens { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; line-height: 1.9;
                       min-width: 240px; max-width: 520px; overflow-wrap: anywhere; }
.text-report .tok { padding: 1px 2px; border-radius: 2px; white-space: pre-wrap; }
.text-report .tok.off { color: #9aa1ad; font-style: italic; }
.text-report .tok.special { font-style: italic; opacity: 0.6; }
.text-report .tok.evidence { outline: 2px solid #1d2230; outline-offset: 0; }
.text-report .continuation { color: var(--muted); }
.text-report .continuation .tok { border-bottom: 1px dashed #9aa1ad; }
.text-report details { margin-top: 4px; }
.text-report summary { cursor: pointer; color: var(--muted); font-size: 12px; }
.text-report table.heat { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; margin-top: 4px; }
.text-report table.heat th, .text-report table.heat td { padding: 1px 3px; border: 1px solid #eef0f4; }
.text-report table.heat td { min-width: 22px; height: 18px; }
.text-report table.heat thead th { position: static; writing-mode: vertical-rl; transform: rotate(180deg);
                                   font-weight: 400; box-shadow: none; max-height: 120px; }
.text-report .legend { display: block; min-width: 160px; max-width: 240px; font-weight: 400; }
.text-report .legend .cbar-scale { white-space: nowrap; }
"""


@lru_cache(maxsize=1)
def lut() -> tuple[tuple[int, int, int], ...]:
    """The diverging colour map as 256 RGB triples."""
    return tuple(tuple(rgb) for rgb in colormap_lut(CMAP))


def colour(value: float, scale: float) -> tuple[str, bool]:
    """The CSS background of ``value`` on ``[-scale, scale]`` and whether its text should be light."""
    x = float(np.clip(value / scale, -1.0, 1.0)) if scale > 0 and np.isfinite(value) else 0.0
    r, g, b = lut()[round((x + 1.0) / 2.0 * 255)]
    return f"rgb({r},{g},{b})", abs(x) > LIGHT_TEXT


def colour_bar(scale: float, label: str) -> str:
    """The colour bar of a scale ``[-scale, scale]``, with its three values."""
    text = number(scale)
    return (f"<span class=\"legend\"><span class=\"cbar\" style=\"background: {gradient_css(list(lut()))}\" "
            f"role=\"img\" aria-label=\"colour scale of {esc(label)}: -{esc(text)} to {esc(text)}\"></span>"
            f"<span class=\"cbar-scale\"><span>−{esc(text)}</span><span>0</span><span>{esc(text)}</span></span></span>")


def token_span(token: str, value: float, scale: float, *, shown: bool, special: bool, evidence: bool) -> str:
    """One token: its colour gives its value (the tooltip says it); a token without a value
    (a special token, one left out) is dimmed."""
    classes = ["tok"]
    if special:
        classes.append("special")
    if evidence:
        classes.append("evidence")
    if not shown:
        classes.append("off")
        why = "special token" if special else "no value"
        return f"<span class=\"{' '.join(classes)}\" title=\"{esc(token)}: {why}\">{esc(token)}</span>"
    background, light = colour(value, scale)
    style = f"background:{background}" + (";color:#fff" if light else "")
    mark = (" (evidence)" if evidence else "") + (" (special token)" if special else "")
    return (f"<span class=\"{' '.join(classes)}\" style=\"{style}\" title=\"{esc(token)}: {value:.4g}{mark}\">"
            f"{esc(token)}</span>")


def tokens_html(tokens: Sequence[str], values: np.ndarray, shown: np.ndarray, special: np.ndarray,
                evidence: Sequence[bool] | None, scale: float) -> str:
    """A text's tokens, each highlighted by its value."""
    return " ".join(token_span(tok, float(values[t]), scale, shown=bool(shown[t]), special=bool(special[t]),
                               evidence=bool(evidence[t]) if evidence is not None else False)
                    for t, tok in enumerate(tokens))


def matrix_html(inputs: Sequence[str], outputs: Sequence[str], matrix: np.ndarray, shown: np.ndarray,
                scale: float, method: str) -> str:
    """The output x input matrix of a continuation as an HTML table heat map, folded in a
    ``<details>`` (opens without JavaScript): a row per output token, a column per input token."""
    head = "".join(f"<th scope=\"col\">{esc(tok)}</th>" for tok in inputs)
    rows = []
    for o, out in enumerate(outputs):
        cells = []
        for t, tok in enumerate(inputs):
            if not shown[t]:
                cells.append(f"<td title=\"{esc(out)} ← {esc(tok)}: no value\"></td>")
                continue
            value = float(matrix[o, t])
            background, _ = colour(value, scale)
            cells.append(f"<td style=\"background:{background}\" title=\"{esc(out)} ← {esc(tok)}: "
                         f"{value:.4g}\"></td>")
        rows.append(f"<tr><th scope=\"row\">{esc(out)}</th>{''.join(cells)}</tr>")
    return (f"<details class=\"matrix\"><summary>output × input tokens ({len(outputs)} × {len(inputs)})"
            f"</summary>{colour_bar(scale, f'{method} per output token')}<table class=\"heat\">"
            f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></details>")
