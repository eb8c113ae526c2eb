"""Plain-text tables and the rows of the method and metric listings.

Used by the CLI and the demo; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attribkit.registry import MethodSpec

METHOD_COLUMNS = ("name", "aliases", "family", "needs", "output", "inputs", "sign", "plugin", "description")
METRIC_COLUMNS = ("name", "kind", "better", "needs", "plugin", "description")
#: the listings' columns, most important first, for a table fitted to a terminal (:func:`fit_table`)
METHOD_PRIORITY = ("name", "family", "output", "inputs", "sign", "needs", "aliases", "plugin")
METRIC_PRIORITY = ("name", "better", "forwards", "kind", "needs", "plugin")
CELL_MAX = 28  # a fitted table cuts the cells of its other columns (not the first) to this many characters
FLEXIBLE_MIN = 24  # the flexible column (the description) keeps at least this many, or is left out


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Plain fixed-width table of ``rows`` (dicts) restricted to ``columns``."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def fit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], width: int, priority: Sequence[str],
              flexible: str = "description") -> tuple[str, list[str]]:
    """:func:`format_table` within ``width`` characters a line, and the columns it left out.

    The first of ``priority`` is always shown, in full; the others are taken in
    ``priority``'s order (then the rest of ``columns``) while they fit beside at least ``FLEXIBLE_MIN`` characters of
    ``flexible`` (their cells cut to ``CELL_MAX``, with ``…``); ``flexible`` gets the
    width that is left and is cut to it. Columns keep the order of ``columns``.
    """
    cells = [{c: str(row.get(c, "")) for c in columns} for row in rows]

    def natural(c: str) -> int:
        longest = max([len(c)] + [len(r[c]) for r in cells])
        return longest if c in (priority[0], flexible) else min(longest, max(CELL_MAX, len(c)))

    has_flexible = flexible in columns
    reserve = 2 + min(natural(flexible), FLEXIBLE_MIN) if has_flexible else 0
    widths = {priority[0]: natural(priority[0])}
    used = widths[priority[0]]
    for c in [*priority[1:], *(c for c in columns if c not in priority)]:
        if c in columns and c != flexible and used + 2 + natural(c) + reserve <= width:
            widths[c] = natural(c)
            used += 2 + widths[c]
    if has_flexible and width - used - 2 >= min(natural(flexible), FLEXIBLE_MIN):
        widths[flexible] = min(natural(flexible), width - used - 2)
    shown = [c for c in columns if c in widths]
    fitted = [{c: _cut(r[c], widths[c]) for c in shown} for r in cells]
    return format_table(fitted, shown), [c for c in columns if c not in widths]


def metric_columns(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """:data:`METRIC_COLUMNS`, with ``forwards`` (what one image costs) after ``better``
    when the rows give it."""
    if not any(row.get("forwards") for row in rows):
        return METRIC_COLUMNS
    at = METRIC_COLUMNS.index("better") + 1
    return (*METRIC_COLUMNS[:at], "forwards", *METRIC_COLUMNS[at:])


def method_row(spec: MethodSpec) -> dict[str, Any]:
    """Everything the listing shows about one method, as plain values (JSON-ready but ``options``)."""
    return {
        "name": spec.name, "aliases": ",".join(spec.aliases), "family": spec.family,
        "needs": ",".join(spec.needs), "output": spec.output,
        "inputs": "images,text" if spec.text is not None else "images", "sign": spec.sign,
        "plugin": spec.plugin, "options": dict(spec.options), "text_options": dict(spec.text_options),
        "reference": spec.reference,
        "description": spec.description,
    }


def method_rows() -> list[dict[str, Any]]:
    """One :func:`method_row` per registered method, sorted by name."""
    from attribkit.api import methods

    return [method_row(s) for s in methods()]


def metric_rows() -> list[dict[str, Any]]:
    """One row per registered metric: name, kind, which way is better, needs, plugin, ..."""
    from attribkit.api import metrics

    return [{"name": s.name, "kind": s.kind, "better": "higher" if s.higher_is_better else "lower",
             "needs": ",".join(s.needs), "plugin": s.plugin, "options": dict(s.options),
             "reference": s.reference, "description": s.description,
             "forwards": s.forwards} for s in metrics()]


def format_fields(row: dict[str, Any]) -> str:
    """``key: value`` lines, keys aligned; a mapping value is listed one ``name = default`` a line."""
    width = max(len(k) for k in row)
    lines = []
    for key, value in row.items():
        if isinstance(value, dict):
            value = "\n".join(f"{' ' * (width + 2)}{k} = {v!r}" for k, v in value.items()).lstrip() or "none"
        lines.append(f"{key.ljust(width)}  {value if value not in (None, '') else '-'}")
    return "\n".join(lines)
