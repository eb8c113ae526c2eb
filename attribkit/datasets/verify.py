"""A store's health: its metadata, its markers, and every stored batch's chunk files.

``ak.open_store(path).verify()`` (or :func:`verify_store`, which also takes a
path and reports a store that cannot even be opened) checks each batch whose
completion marker is written against the record written beside it
(:mod:`attribkit.datasets.store`): every chunk file must exist with its recorded
size and, with ``checksums`` (the default), its recorded digest. A batch from a
store written before the records is read through zarr instead (a damaged chunk
fails to decode). A resumed run makes the cheap part of these checks (the
sizes: :func:`damaged_batches`) and computes a damaged batch again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from attribkit.datasets.chunks import chunk_path
from attribkit.datasets.fingerprint import chunk_digest


@dataclasses.dataclass
class StoreHealth:
    """What :func:`verify_store` found.

    Attributes:
        path: the store's path.
        images, images_done: items in the store, and those whose batch is stored.
        batches, batches_done: batches in the store, and those whose marker is written.
        batches_verified: stored batches whose chunk files match their record.
        batches_unrecorded: stored batches without a record (a store from before the
            records), read through zarr instead.
        checksums: whether the digests were compared (else the sizes only).
        problems: one line per problem, naming the batch, its items and the array.
        damaged: the batches with a problem (a resumed run computes them again).
    """

    path: str
    images: int = 0
    images_done: int = 0
    batches: int = 0
    batches_done: int = 0
    batches_verified: int = 0
    batches_unrecorded: int = 0
    checksums: bool = True
    problems: list[str] = dataclasses.field(default_factory=list)
    damaged: list[int] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem was found."""
        return not self.problems

    def summary(self) -> str:
        """The report as a few lines of text."""
        how = "sizes and checksums" if self.checksums else "sizes"
        count = len(self.problems)
        state = "ok" if self.ok else f"{count} problem{'s' if count > 1 else ''}"
        lines = [f"{self.path}: {state}",
                 f"images stored: {self.images_done} of {self.images}",
                 f"batches stored: {self.batches_done} of {self.batches}; {self.batches_verified} verified "
                 f"({how} of their chunks)"]
        if self.batches_unrecorded:
            lines.append(f"batches without a record (written before attribkit recorded them): "
                         f"{self.batches_unrecorded}, read through zarr")
        lines += [f"problem: {problem}" for problem in self.problems]
        if self.damaged:
            lines.append("the same explain_dataset call (or command) computes the damaged batches again")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able values (``ok`` included)."""
        return {"ok": self.ok, **dataclasses.asdict(self)}


def verify_store(store: Any, checksums: bool = True) -> StoreHealth:
    """The health of an opened ``store`` (an :class:`~attribkit.datasets.store.AttributionStore`;
    :func:`~attribkit.datasets.store.verify_path` takes a path and reports a store that
    cannot be opened instead of raising)."""
    health = StoreHealth(path=str(store.path), images=len(store), checksums=checksums)
    markers, records = store.markers(), store.records()
    health.batches = len(markers)
    for batch, (marker, record) in enumerate(zip(markers, records)):
        rows = _rows(store, batch)
        if marker == "unreadable":
            health.problems.append(f"batch {batch} ({rows}): its completion marker cannot be read")
            health.damaged.append(batch)
            continue
        if not marker:
            continue
        health.batches_done += 1
        health.images_done += min(len(store), (batch + 1) * store.batch_size) - batch * store.batch_size
        if record is None:
            health.batches_unrecorded += 1
            found = _decode_problems(store, batch)
        elif record == "unreadable":
            found = ["its record (integrity) cannot be read"]
        else:
            found = chunk_problems(store, batch, record, checksums)
        if found:
            health.problems += [f"batch {batch} ({rows}): {problem}" for problem in found]
            health.damaged.append(batch)
        elif record is not None:
            health.batches_verified += 1
    return health


def damaged_batches(store: Any) -> dict[int, str]:
    """``{batch: the first problem}`` of the stored batches whose chunk files do not have
    their recorded sizes, or whose record cannot be read (what a resumed run computes
    again; no file is read, only their sizes)."""
    found = {}
    for batch, (marker, record) in enumerate(zip(store.markers(), store.records())):
        if marker is not True or record is None:
            continue
        problems = (["its record (integrity) cannot be read"] if record == "unreadable"
                    else chunk_problems(store, batch, record, checksums=False))
        if problems:
            found[batch] = f"batch {batch} ({_rows(store, batch)}): {problems[0]}"
    return found


def chunk_problems(store: Any, batch: int, record: dict[str, Any], checksums: bool) -> list[str]:
    """What differs between batch ``batch``'s chunk files and its ``record``."""
    problems = []
    for key, expected in record["chunks"].items():
        try:
            path = chunk_path(store._array(key), batch)
        except Exception:  # noqa: BLE001 - an array the metadata no longer has
            problems.append(f"{key}: the array is missing")
            continue
        name = f"{key} chunk {path.relative_to(store.path / key).as_posix()}"
        problems += _file_problems(path, name, expected, checksums)
    return problems


def _file_problems(path: Path, name: str, expected: Any, checksums: bool) -> list[str]:
    if expected is None:
        return [f"{name} exists, but the batch wrote none (all fill values)"] if path.exists() else []
    size, digest = expected
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return [f"{name} is missing ({size} bytes were written)"]
    if actual != size:
        return [f"{name} is {actual} bytes, {size} were written (truncated or overwritten)"]
    if checksums and chunk_digest(path.read_bytes()) != digest:
        return [f"{name} has the size written but other bytes (its checksum differs)"]
    return []


def _decode_problems(store: Any, batch: int) -> list[str]:
    """A batch without a record: each of its arrays' rows, read through zarr."""
    rows = slice(batch * store.batch_size, min(len(store), (batch + 1) * store.batch_size))
    problems = []
    for key, array in store._arrays.items():
        if key in ("done", "integrity"):
            continue
        try:
            array[rows]
        except Exception as exc:  # noqa: BLE001 - zarr's decoding errors vary
            problems.append(f"{key}: its chunk cannot be read ({type(exc).__name__}: {exc})")
    return problems


def _rows(store: Any, batch: int) -> str:
    first = batch * store.batch_size
    last = min(len(store), first + store.batch_size) - 1
    return f"items {first}-{last}" if last > first else f"item {first}"
