"""Token attributions to look at: HTML (Jupyter), the terminal; figures are in
:mod:`attribkit.text.plots`.

Every view colours a token by its value on one diverging scale per result: white at
0, red for positive values, blue for negative ones, full colour at the largest
magnitude among the result's attributed tokens (``result.mask``) that are not special.
Special tokens and tokens that carry no value are dimmed (their values are in the
tooltips, and in the plain terminal view). For a continuation the per-output-token
matrix has its own scale (one for the whole result): each of its entries is a part
of ``values``, so on ``values``' scale they would all look pale.
"""

from __future__ import annotations

import dataclasses
import html
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

#: the ends of the diverging scale (RGB 0-255): negative, zero, positive
NEGATIVE = (31, 119, 180)
ZERO = (255, 255, 255)
POSITIVE = (214, 39, 40)


def token_rgb(v: float) -> tuple[int, int, int]:
    """The colour of a value ``v`` normalised to ``[-1, 1]`` (clipped): white blended
    linearly towards red (positive) or blue (negative)."""
    v = float(np.clip(v, -1.0, 1.0)) if np.isfinite(v) else 0.0
    end = POSITIVE if v >= 0 else NEGATIVE
    return tuple(round(z + abs(v) * (e - z)) for z, e in zip(ZERO, end))  # type: ignore[return-value]


def ink(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb`` (relative luminance)."""
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def shown_token(token: str) -> str:
    """A token as it is shown: byte-level BPE's ``Ġ`` and SentencePiece's ``▁`` (a
    leading space) dropped (a lone one reads ``␣``), newlines and tabs visible, an
    empty token as ``∅``."""
    text = token
    if text and text[0] in "Ġ▁":
        text = text[1:] or "␣"
    text = text.replace("Ċ", "⏎").replace("\n", "⏎").replace("\t", "⇥").replace("ĉ", "⇥")
    return text or "∅"


def scale_of(values: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The largest finite ``|value|`` where ``mask`` (everywhere when ``None``); 0 when none."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values) if mask is None else np.isfinite(values) & np.asarray(mask, dtype=bool)
    return float(np.abs(values[keep]).max()) if keep.any() else 0.0


@dataclasses.dataclass
class TokenRow:
    """One text of a result, ready to draw: its tokens, their values, which are dimmed,
    a label (the explained class) and, for a continuation, the output tokens and the
    text's block of the matrix ``(T_out_i, T_i)``."""

    index: int
    tokens: list[str]
    values: np.ndarray
    dimmed: np.ndarray
    attributed: np.ndarray
    label: str
    outputs: list[str] | None = None
    matrix: np.ndarray | None = None


def token_rows(result: Any, limit: int | None = None,
               class_names: Sequence[str] | None = None) -> list[TokenRow]:
    """The first ``limit`` texts of a :class:`~attribkit.text.result.TokenAttribution`
    (every text when ``None``) as :class:`TokenRow`; ``class_names`` name the explained
    classes in the labels (``class 2 (positive)``)."""
    values = _array(result.values)
    mask = _flags(result.mask, values.shape, True)
    special = _flags(result.special, values.shape, False)
    matrix = _array(result.matrix) if result.matrix is not None else None
    target = None if result.target is None else _array(result.target).reshape(-1)
    rows = []
    for i, tokens in enumerate(result.tokens[:limit]):
        n = len(tokens)
        outputs = list(result.output_tokens[i]) if result.output_tokens is not None else None
        label = class_text(int(target[i]), class_names) if target is not None and i < len(target) else ""
        rows.append(TokenRow(index=i, tokens=list(tokens), values=values[i, :n],
                             dimmed=special[i, :n] | ~mask[i, :n], attributed=mask[i, :n], label=label,
                             outputs=outputs,
                             matrix=matrix[i, :len(outputs), :n] if matrix is not None and outputs is not None
                             else None))
    return rows


def class_text(index: int, class_names: Sequence[str] | None = None) -> str:
    """``class 2``, or ``class 2 (positive)`` when ``class_names`` names it."""
    named = class_names is not None and 0 <= index < len(class_names)
    return f"class {index}" + (f" ({class_names[index]})" if named else "")


def scales(result: Any) -> tuple[float, float]:
    """The result's two scales: ``values`` over its coloured tokens (attributed and not
    special; all attributed ones when every one is special), and the matrix (0 without one)."""
    values = _array(result.values)
    mask = _flags(result.mask, values.shape, True)
    plain = mask & ~_flags(result.special, values.shape, False)
    mask = plain if plain.any() else mask
    matrix = 0.0
    if result.matrix is not None:
        m = _array(result.matrix)
        matrix = scale_of(m, np.broadcast_to(mask[:, None, :], m.shape))
    return scale_of(values, mask), matrix


def _flags(flags: Any, shape: tuple[int, ...], default: bool) -> np.ndarray:
    if flags is None:
        return np.full(shape, default)
    return _array(flags).astype(bool)


def _array(x: Any) -> np.ndarray:
    """A tensor (any device) or array as NumPy; bools stay bools, numbers become float64."""
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    return x if x.dtype == bool else x.astype(np.float64)


# --------------------------------------------------------------------------- HTML


def html_tokens(result: Any, *, limit: int = 16, class_names: Sequence[str] | None = None) -> str:
    """The result as HTML (what Jupyter shows): a line per text (the first ``limit``),
    each token on its colour, its value in the tooltip; special tokens and tokens
    without a value dimmed; for a continuation, the output tokens after an arrow and,
    folded under each text, the output x input matrix as a table. Every string is
    escaped. ``class_names`` name the explained classes."""
    scale, matrix_scale = scales(result)
    rows = token_rows(result, limit, class_names)
    kind = result.meta.get("kind", "")
    head = [f"<b>{html.escape(str(result.method))}</b>", f"{len(result.tokens)} text(s)"]
    if kind == "continuation":
        head.append(f"explains the continuation's {html.escape(str(result.meta.get('score', 'score')))}")
    head.append(f"scale ±{scale:.3g} {_legend()}")
    lines = [f'<div style="font-family:sans-serif;font-size:12px;margin-bottom:4px">{" · ".join(head)}</div>']
    for row in rows:
        cells = [_html_token(t, v, scale, d) for t, v, d in zip(row.tokens, row.values, row.dimmed)]
        label = f"{row.index}" + (f" · {html.escape(row.label)}" if row.label else "")
        tail = ""
        if row.outputs is not None:
            tail = (' <span style="color:#666">→</span> '
                    + " ".join(f'<span style="border-bottom:1px dotted #888">{html.escape(shown_token(t))}</span>'
                               for t in row.outputs))
        lines.append(f'<div style="font-family:monospace;line-height:1.9;margin:1px 0">'
                     f'<span style="color:#888;font-size:11px;margin-right:6px">{label}</span>'
                     f'{" ".join(cells)}{tail}</div>')
        if row.matrix is not None and len(row.outputs or []):
            lines.append(_html_matrix(row, matrix_scale))
    more = len(result.tokens) - len(rows)
    if more > 0:
        lines.append(f'<div style="color:#888;font-size:11px">… {more} more text(s)</div>')
    return f'<div class="attribkit-tokens">{"".join(lines)}</div>'


def _css(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def _html_token(token: str, value: float, scale: float, dimmed: bool) -> str:
    text = html.escape(shown_token(token))
    tip = html.escape(f"{token} {value:+.4g}" + (" (special)" if dimmed else ""))
    if dimmed:
        return f'<span title="{tip}" style="color:#999;opacity:0.6;padding:1px 2px">{text}</span>'
    rgb = token_rgb(value / scale if scale > 0 else 0.0)
    return (f'<span title="{tip}" style="background:{_css(rgb)};color:{_css(ink(rgb))};'
            f'padding:1px 3px;border-radius:2px">{text}</span>')


def _legend() -> str:
    stops = ", ".join(_css(token_rgb(v)) for v in (-1.0, 0.0, 1.0))
    return (f'<span style="display:inline-block;width:80px;height:9px;vertical-align:middle;'
            f'background:linear-gradient(to right, {stops})" title="negative, 0, positive"></span>')


def _html_matrix(row: TokenRow, scale: float) -> str:
    head = "".join(f'<th style="font-weight:normal;padding:0 3px">{html.escape(shown_token(t))}</th>'
                   for t in row.tokens)
    body = []
    for j, out in enumerate(row.outputs or []):
        cells = []
        for t, token in enumerate(row.tokens):
            v = float(row.matrix[j, t])
            rgb = (242, 242, 242) if row.dimmed[t] else token_rgb(v / scale if scale > 0 else 0.0)
            tip = html.escape(f"{out} ← {token}: {v:+.4g}")
            cells.append(f'<td title="{tip}" style="background:{_css(rgb)};min-width:1.6em"></td>')
        body.append(f'<tr><th style="font-weight:normal;text-align:right;padding:0 4px">'
                    f'{html.escape(shown_token(out))}</th>{"".join(cells)}</tr>')
    return (f'<details style="margin:0 0 4px 2em;font-size:11px"><summary>per output token '
            f'(scale ±{scale:.3g})</summary><table style="border-collapse:collapse;font-family:monospace">'
            f'<tr><th></th>{head}</tr>{"".join(body)}</table></details>')


# ----------------------------------------------------------------------- terminal


def use_color(stream: TextIO | None = None, color: bool | None = None) -> bool:
    """``color`` when given; else whether ``stream`` (default ``sys.stdout``) is a terminal
    and ``NO_COLOR`` is unset."""
    if color is not None:
        return bool(color)
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def terminal_tokens(result: Any, *, color: bool | None = None, stream: TextIO | None = None,
                    limit: int | None = None, per_output: bool = False,
                    class_names: Sequence[str] | None = None) -> str:
    """The result as text for a terminal: a header, then a line per text (the first
    ``limit``). In colour (``color=True``, or ``None`` and ``stream`` is a terminal)
    each token is on a 24-bit ANSI background, dimmed when special or without a
    value; else each token is followed by its value, ``cat(+0.147)``. For a
    continuation the output tokens follow an arrow, and with ``per_output`` a line
    per output token shows the matrix row of that token (the matrix's own scale).
    ``class_names`` name the explained classes."""
    colored = use_color(stream, color)
    scale, matrix_scale = scales(result)
    head = f"{result.method} · {len(result.tokens)} text(s)"
    if result.meta.get("kind") == "continuation":
        head += f" · continuation {result.meta.get('score', 'score')}"
    head += f" · scale ±{scale:.3g}" + (" (red +, blue −)" if colored else "")
    lines = [head]
    for row in token_rows(result, limit, class_names):
        label = f"[{row.index}]" + (f" {row.label}" if row.label else "")
        text = _terminal_line(row, row.values, scale, colored)
        if row.outputs is not None:
            text += " → " + " ".join(shown_token(t) for t in row.outputs)
        lines.append(f"{label}: {text}")
        if per_output and row.matrix is not None:
            for j, out in enumerate(row.outputs or []):
                lines.append(f"    {shown_token(out)} ← "
                             + _terminal_line(row, row.matrix[j], matrix_scale, colored))
    return "\n".join(lines)


def _terminal_line(row: TokenRow, values: np.ndarray, scale: float, colored: bool) -> str:
    parts = []
    for token, v, dim, attributed in zip(row.tokens, values, row.dimmed, row.attributed):
        text = shown_token(token)
        if not colored:
            parts.append(f"{text}({float(v):+.3g})" if attributed else text)
        elif dim:
            parts.append(f"\x1b[2m{text}\x1b[0m")
        else:
            rgb = token_rgb(float(v) / scale if scale > 0 else 0.0)
            fg = ink(rgb)
            parts.append(f"\x1b[48;2;{rgb[0]};{rgb[1]};{rgb[2]}m\x1b[38;2;{fg[0]};{fg[1]};{fg[2]}m"
                         f"{text}\x1b[0m")
    return " ".join(parts)
