"""Plain-text tables and the rows of the method and metric listings.

Used by the CLI and the demo; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attribkit.registry import MethodSpec

METHOD_COLUMNS = ("name", "aliases", "family", "needs", "output", "sign", "plugin", "description")
METRIC_COLUMNS = ("name", "kind", "better", "needs", "plugin", "description")


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Plain fixed-width table of ``rows`` (dicts) restricted to ``columns``."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def method_row(spec: MethodSpec) -> dict[str, Any]:
    """Everything the listing shows about one method, as plain values (JSON-ready but ``options``)."""
    return {
        "name": spec.name, "aliases": ",".join(spec.aliases), "family": spec.family,
        "needs": ",".join(spec.needs), "output": spec.output, "sign": spec.sign,
        "plugin": spec.plugin, "options": dict(spec.options), "reference": spec.reference,
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
             "reference": s.reference, "description": s.description} for s in metrics()]


def format_fields(row: dict[str, Any]) -> str:
    """``key: value`` lines, keys aligned; a mapping value is listed one ``name = default`` a line."""
    width = max(len(k) for k in row)
    lines = []
    for key, value in row.items():
        if isinstance(value, dict):
            value = "\n".join(f"{' ' * (width + 2)}{k} = {v!r}" for k, v in value.items()).lstrip() or "none"
        lines.append(f"{key.ljust(width)}  {value if value not in (None, '') else '-'}")
    return "\n".join(lines)
