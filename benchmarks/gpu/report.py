"""The run's outputs: ``gpu.json`` (settings, timings per section, every row) and
``gpu.md`` (a header with the device, torch version and date, then one table)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.gpu.measure import Row

COLUMNS = ("section", "method", "implementation", "name", "median ms", "x floor", "x peer", "peak MiB", "note")


def write_json(path: Path, meta: dict[str, Any], rows: list[Row]) -> None:
    """``{"meta": meta, "rows": [...]}``, NaN written as ``null``."""
    doc = {"meta": meta, "rows": [_finite(dataclasses.asdict(r)) for r in rows]}
    path.write_text(json.dumps(doc, indent=1) + "\n")


def markdown(meta: dict[str, Any], rows: list[Row]) -> str:
    """The header lines and one Markdown table of ``rows``."""
    mode = "dry run (tiny sizes, numbers mean nothing)" if meta["dry_run"] else "full sizes"
    lines = [f"# attribkit GPU benchmark ({mode})", "",
             f"- device: {meta['device_name']} ({meta['device']})",
             f"- torch {meta['torch']}, attribkit {meta['attribkit']}",
             f"- date: {meta['date']}",
             f"- elapsed: {meta['elapsed_s']:.1f} s ("
             + ", ".join(f"{k} {v:.1f} s" for k, v in meta["sections_s"].items()) + ")",
             "- x floor: median over the group floor's median; x peer: attribkit over each peer, "
             "or a peer over attribkit", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for r in rows:
        cells = [r.section, r.method, r.implementation, r.name, _num(r.median_ms, 2), _num(r.vs_floor, 2),
                 ", ".join(f"{v:.2f} {k}" for k, v in r.vs_peer.items()), _num(r.peak_mb, 0), _note(r)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _note(row: Row) -> str:
    if row.status != "ok":
        return f"skipped: {row.reason}"
    notes = [f"{k.replace('_', ' ')} {v}" for k, v in row.extra.items()]
    if row.repeats:
        notes.append(f"{row.repeats} rounds")
    return "; ".join(notes)


def _num(value: float | None, digits: int) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
