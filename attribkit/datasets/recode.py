"""A finished store copied with its maps in another dtype or compressor, computing nothing.

``recode_store("run.zarr", "small.zarr", dtype="float16", compressor="zstd")``
writes the same arrays, batch by batch, through the same writer as
:func:`~attribkit.datasets.run.explain_dataset`, so the copy's chunks are byte
for byte those that a run with these settings writes for the same maps (and
float16's range is checked the same way). The copy's settings name the new
dtype and compressor; everything else is the original's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from attribkit.datasets.encoding import check_compressor, check_dtype, codecs, stored_maps
from attribkit.datasets.lock import StoreLock
from attribkit.datasets.store import RECORDS, UNSTATED_SETTINGS, AttributionStore, StoreError, create_store, open_store


def recode_store(source: str | Path, out: str | Path, dtype: Any = "float32",
                 compressor: str | None = None) -> AttributionStore:
    """Copy the store at ``source`` to ``out`` (absent or empty) with its maps stored as
    ``dtype`` and compressed by ``compressor`` (as in ``explain_dataset``); only stored
    batches are copied, with their records (:mod:`attribkit.datasets.store`); ``out`` is
    locked while it is written. Returns the new store, opened read-only."""
    dtype, compressor = check_dtype(dtype), check_compressor(compressor)
    old = open_store(source)
    if str(Path(out).resolve()) == str(old.path.resolve()):
        raise StoreError(f"recode_store writes a new store: {out} is the source itself")
    group = old._group
    names = _array_names(group)
    columns = {}
    for name in names:
        array = group[name]
        kept = np.dtype(dtype) if name.startswith("maps/") else np.dtype(array.dtype)
        columns[name] = (tuple(array.shape[1:]), np.dtype(object) if kept.kind in "OUT" else kept)
    with StoreLock(out):  # one writer, as for a run
        meta = {key: value for key, value in old.meta.items() if key != "format"}
        meta["settings"] = {**UNSTATED_SETTINGS, **old.settings, "dtype": dtype, "compressor": compressor}
        new = create_store(Path(out), meta, columns, len(old), old.batch_size, map_codecs=codecs(compressor))
        records = old.records()
        for batch in np.flatnonzero(old.batches_done):
            start = int(batch) * old.batch_size
            rows = slice(start, min(len(old), start + old.batch_size))
            values = {name: group[name][rows] for name in names}
            for name in names:
                if name.startswith("maps/"):
                    values[name] = stored_maps(values[name], dtype, name.removeprefix("maps/"),
                                               (rows.start, rows.stop - 1))
            record = records[batch]  # the items' digests carry over: a resume checks them as before
            new.write_batch(int(batch), start, values,
                            inputs=record.get("inputs") if isinstance(record, dict) else None)
    return open_store(out)


def _array_names(group: Any) -> list[str]:
    """Every array of the store but the batches' markers and records, by path (``maps/gradcam``)."""
    found = []
    for name, member in group.members(max_depth=None):
        if hasattr(member, "dtype") and name not in ("done", RECORDS):
            found.append(name)
    return sorted(found)
