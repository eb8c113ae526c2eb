"""The report of a text store (``explain_dataset`` on text): the stored rows as
:func:`attribkit.report.text.write_text_report` draws token attributions, a row per
text, a column per method (:func:`attribkit.report.store.store_report` routes here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def text_store_report(store: Any, out: Path, *, limit: int | None = None, title: str | None = None) -> Path:
    """Write the report of the :class:`~attribkit.datasets.text_store.TextStore` ``store`` to
    ``out``: its stored, readable rows (the first ``limit``), each method's tokens highlighted
    by value, a continuation's output x input matrix per text, the item ids as row names."""
    from attribkit.report.text import write_text_report

    errors = store._array("errors")[:]
    rows = np.flatnonzero(store.done & (errors == ""))[:limit]
    if not len(rows):
        raise ValueError(f"{store.path} holds no stored, readable text to report")
    results = {method: store.attribution(method, rows) for method in store.methods}
    heading = title or f"attribkit report: {store.path.name}"
    return write_text_report(out, results, title=heading, ids=[str(i) for i in store.ids[rows]])
