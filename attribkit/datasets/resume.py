"""What a resumed run checks in the batches it would skip.

* :func:`repair`: a stored batch whose chunk files no longer have the sizes
  recorded beside its marker (a truncated or missing chunk), or whose record is
  unreadable, loses its marker and is computed again, with a
  :class:`StoreRepairWarning` that says so.
* :func:`changed_item`: the items of the stored batches are read again and their
  digests compared with those recorded (:mod:`attribkit.datasets.fingerprint`):
  the first item that differs is named, and the run is refused, so that a store
  never mixes maps of two versions of the data. ``verify_inputs=False`` skips
  this pass, which reads the stored part of the data once more.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from attribkit.datasets import items as I
from attribkit.datasets.planning import Plan
from attribkit.datasets.store import AttributionStore
from attribkit.datasets.verify import damaged_batches
from attribkit.errors import InputError


class StoreRepairWarning(UserWarning):
    """Stored batches were found damaged and are computed again."""


def repair(store: AttributionStore) -> list[int]:
    """Remove the markers of the damaged stored batches (so that they are computed again),
    warn about them, and return them."""
    damaged = damaged_batches(store)
    if damaged:
        shown = "; ".join(list(damaged.values())[:3]) + ("; ..." if len(damaged) > 3 else "")
        warnings.warn(f"{store.path}: {len(damaged)} stored batch{'es are' if len(damaged) > 1 else ' is'} "
                      f"damaged and computed again: {shown}", StoreRepairWarning, stacklevel=3)
        store.unmark(sorted(damaged))
    return sorted(damaged)


def checked_batches(done: np.ndarray, records: list[Any]) -> list[int]:
    """The stored batches (``done``: a flag per batch) whose ``records`` have input digests
    (those :func:`changed_item` can check)."""
    return [b for b, stored in enumerate(done)
            if stored and isinstance(records[b], dict) and records[b].get("inputs") is not None]


def changed_item(plan: Plan, store: AttributionStore, batches: list[int], out: Path, bar: Any) -> str | None:
    """Read the items of ``batches`` (stored ones) and compare each with its recorded digest;
    the message naming the first that differs, or ``None``. ``bar`` counts the items."""
    if not batches:
        return None
    records = store.records()  # one read of them all: a chunk read per batch costs more
    loader = plan.text.batches(plan, batches, digests=True) if plan.text else I.batches(
        plan.dataset, batches, plan.batch_size, plan.num_workers, pin_memory=False, digests=True,
        target=plan.target)
    inputs = plan.text.inputs_named if plan.text else "image, label, mask"
    for batch in loader:
        if batch.problem:
            raise InputError(batch.problem)
        recorded = records[batch.number]["inputs"]
        for row, (now, then) in enumerate(zip(batch.digests, recorded)):
            if now != then:
                index = batch.start + row
                item_id = str(plan.ids[index])
                name = f"item {index}" if item_id == str(index) else f"item {index} ({item_id})"
                return (f"{name} of the data is not the one stored in {out}: its input bytes ({inputs}) "
                        f"differ from those batch {batch.number} was computed from; the data changed "
                        f"since the store was written. Write to another path, delete {out} to start over, or "
                        "pass verify_inputs=False (the CLI: --no-verify-inputs) to keep the stored batches as they are")
        bar.update(batch.size)
    return None
