"""Token attributions to look at: HTML (Jupyter), the terminal."""

from __future__ import annotations

import html
from typing import Any

import numpy as np


def html_tokens(result: Any, *, limit: int = 16) -> str:
    """Each text's tokens on a background whose colour gives the value: red positive,
    blue negative, one scale (the largest magnitude) for the whole result."""
    values = np.asarray(result.numpy(), dtype=np.float64)
    scale = float(np.abs(values).max()) if values.size else 0.0
    lines = []
    for i, tokens in enumerate(result.tokens[:limit]):
        cells = []
        for t, token in enumerate(tokens):
            v = values[i, t] / scale if scale > 0 else 0.0
            colour = f"rgba(214,39,40,{abs(v):.3f})" if v >= 0 else f"rgba(31,119,180,{abs(v):.3f})"
            cells.append(f'<span title="{values[i, t]:.4g}" style="background:{colour};padding:1px 2px">'
                         f"{html.escape(token)}</span>")
        lines.append(f'<div style="font-family:monospace;line-height:1.8">{" ".join(cells)}</div>')
    return (f'<div class="attribkit-tokens"><div style="font-family:sans-serif;font-size:12px">'
            f"<b>{html.escape(result.method)}</b> · {len(result.tokens)} text(s)</div>{''.join(lines)}</div>")
