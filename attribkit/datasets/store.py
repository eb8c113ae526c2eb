"""The store of :func:`~attribkit.datasets.run.explain_dataset`: a zarr v3 group, one chunk per batch.

Layout of ``RUN.zarr`` (``N`` items in batches of ``B``; every array of ``N``
rows is chunked by ``B`` rows, so batch ``b`` is chunk ``b`` of each)::

    zarr.json                  attributes["attribkit"]: the run's metadata (below)
    ids                        (N,) file paths (str) or dataset indices (int64)
    errors                     (N,) why an item could not be read, "" when it was
    labels                     (N,) int64, when the data has labels (-1: unreadable item)
    targets                    (N,) int64, the explained class (absent for a callable target)
    boxes, regions             the items' Box targets (N, 4) float32, or Region masks (N, h, w) bool at most
                               64 px a side, when the items carry them (:mod:`attribkit.datasets.targets`)
    predictions, scores        (N,) int64 top class and float32 its score (the model's output)
    maps/METHOD                (N, ...) maps, as ``explain`` returns them, as float32 (default) or float16,
                               uncompressed (default) or compressed (:mod:`attribkit.datasets.encoding`)
    metrics/METHOD/METRIC      (N,) float32 per-image scores
    integrity                  (batches,) str: batch b's record, JSON (below), written just before its marker
    done                       (batches,) bool: batch b's completion marker

A batch is written whole or not at all: zarr's ``LocalStore`` writes every
chunk to a temporary file and renames it into place (atomic on POSIX), so a
killed process leaves no torn chunk; and batch ``b``'s marker ``done[b]`` is
written only after every one of its chunks. Chunk files alone could not say a
batch is finished: a batch spans many arrays, and zarr writes no chunk whose
values all equal the fill value. A batch without its marker is computed again
on resume; temporary files a kill left behind are removed then.

Batch ``b``'s record ``integrity[b]`` is ``{"chunks": {array: [size, digest] or
null}, "inputs": [digest per item] or null}``: the size and CRC-32 of
each chunk file the batch wrote (``null``: zarr wrote none, all fill values),
and a digest of each item's input bytes (:mod:`attribkit.datasets.fingerprint`).
A resumed run computes again a batch whose chunk files no longer have their
recorded sizes, and refuses data whose items differ from the digests of the
batches it skips; :meth:`AttributionStore.verify` checks every digest. A store
written before these records resumes as before (its batches are taken as they are).

The metadata holds ``settings`` (what the values depend on: the model's class
and a fingerprint of its weights, the data, methods with their options and
layers, target, batch size, metrics, image shape, the maps' dtype and
compressor, the attribkit version), compared when a run resumes; ``layers`` (the layer each method used),
``classes`` (class names, when the data has them), ``skipped_files`` (files of
a folder that are not images), ``images`` (an image folder's root and crop, for
``attribkit report``) and ``runs`` (one record per finished call).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from attribkit.datasets import validate
from attribkit.errors import MissingDependencyError, StoreError

__all__ = ["AttributionStore", "Predictions", "StoreError", "open_store", "open_writable", "create_store",
           "resume_store"]

FORMAT = 1
UNSTATED_SETTINGS = {"dtype": "float32", "compressor": "none"}  # what a store from before these settings used
RECORDS = "integrity"  # the array of the batches' records
OPTIONAL = ("labels", "targets", "predictions", "scores", "boxes", "regions", RECORDS)
_PARTIAL = re.compile(r".*\.[0-9a-f]{32}\.partial")  # zarr LocalStore's temporary chunk files
UNREADABLE = "unreadable"  # a record or marker that cannot be read (damaged)


class Predictions(NamedTuple):
    """The model's top class per image and its score (the model's output for that class)."""

    classes: np.ndarray
    scores: np.ndarray


def zarr_module() -> Any:
    """``zarr``, or :class:`MissingDependencyError` with the pip command."""
    try:
        import zarr
    except ImportError as exc:
        raise MissingDependencyError(
            "attribkit's dataset store needs zarr (>= 3), which is not installed: "
            "pip install 'attribkit[datasets]'") from exc
    return zarr


def fill_value(dtype: np.dtype) -> Any:
    """What an unwritten or unreadable row holds: NaN, -1, False or ``""``."""
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    return False if dtype.kind == "b" else ""


class AttributionStore:
    """The maps, targets, predictions and metric scores of one ``explain_dataset`` run.

    ``store[method]`` is the zarr array ``(N, ...)`` of that method's maps (read
    lazily: slice it, or ``np.asarray`` it whole); the other attributes are NumPy
    arrays of ``N`` rows. Rows of batches not yet written hold NaN (maps, scores)
    or -1 (classes); :attr:`done` says which rows are stored.
    """

    def __init__(self, group: Any) -> None:
        self._group = group
        self.path = Path(str(group.store.root))
        meta = group.attrs.asdict().get("attribkit")
        if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
            raise StoreError(f"{self.path} is a zarr store, but not one written by attribkit's "
                             "explain_dataset (its attributes lack attribkit's metadata)")
        validate.check_meta(meta, str(self.path / "zarr.json"))
        self.meta: dict[str, Any] = dict(meta)
        self._writers: dict[str, Any] = {}
        self._arrays: dict[str, Any] = {}
        self._open_arrays()

    def _open_arrays(self) -> None:
        """Open (and check) every array the metadata promises, and the optional ones present."""
        items, size = len(self), self.batch_size
        for key in validate.expected_arrays(self.meta) + [k for k in OPTIONAL
                                                          if (self.path / k / "zarr.json").exists()]:
            rows, chunk = (-(-items // size), 1) if key in ("done", RECORDS) else (items, size)
            self._arrays[key] = validate.check_array(self._group, self.path, key, rows, chunk)

    # ------------------------------------------------------------------ reading

    def _array(self, key: str) -> Any:
        if key not in self._arrays:
            self._arrays[key] = self._group[key]
        return self._arrays[key]

    def has(self, column: str) -> bool:
        """Whether the store has the array ``column`` (``"labels"``, ``"predictions"``, ...),
        without reading it."""
        return column in self._arrays

    def _column(self, key: str) -> np.ndarray | None:
        return self._array(key)[:] if key in self._arrays else None

    @property
    def settings(self) -> dict[str, Any]:
        """What the values depend on (compared when a run resumes)."""
        return self.meta["settings"]

    @property
    def methods(self) -> list[str]:
        """The stored methods, in the order they were given."""
        return list(self.settings["methods"])

    @property
    def layers(self) -> dict[str, str | None]:
        """The layer each method used (``None`` for pixel methods)."""
        return dict(self.meta["layers"])

    @property
    def batch_size(self) -> int:
        return int(self.settings["batch_size"])

    @property
    def class_names(self) -> list[str] | None:
        """The data's class names (an image folder's class folders), if it has them."""
        return self.meta.get("classes")

    @property
    def runs(self) -> list[dict[str, Any]]:
        """One record per finished call: images computed, seconds, processes."""
        return list(self.meta.get("runs", []))

    def __len__(self) -> int:
        return int(self.settings["data"]["items"])

    def __getitem__(self, method: str) -> Any:
        if method not in self.settings["methods"]:
            from attribkit.api import get_method  # an alias; the registry needs no torch

            try:
                method = get_method(method).name
            except LookupError:
                pass
        if method not in self.settings["methods"]:
            raise KeyError(f"{self.path} holds no maps of {method!r}; stored methods: "
                           f"{', '.join(self.methods)}")
        return self._array(f"maps/{method}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.methods)

    @property
    def ids(self) -> np.ndarray:
        """File paths (relative to the folder) or dataset indices."""
        return self._array("ids")[:]

    @property
    def labels(self) -> np.ndarray | None:
        """The data's labels (-1 for an unreadable item), or ``None`` when it has none."""
        return self._column("labels")

    @property
    def targets(self) -> np.ndarray | None:
        """The explained class per image, or ``None`` for a callable target."""
        return self._column("targets")

    boxes = property(lambda self: self._column("boxes"), doc="The items' target boxes (layout above), or None.")
    regions = property(lambda self: self._column("regions"), doc="The items' region masks (layout above), or None.")

    @property
    def predictions(self) -> Predictions | None:
        """Top class and score per image, or ``None`` when the model's output is not ``(B, classes)``."""
        if "predictions" not in self._arrays:
            return None
        return Predictions(self._array("predictions")[:], self._array("scores")[:])

    @property
    def metrics(self) -> dict[str, dict[str, np.ndarray]]:
        """``metrics[method][metric]``: one score per image."""
        return {m: {k: self._array(f"metrics/{m}/{k}")[:] for k in self.settings["metrics"]}
                for m in self.methods}

    @property
    def batches_done(self) -> np.ndarray:
        """One flag per batch: its completion marker is written (a damaged marker reads as not)."""
        return np.array([state is True for state in self.markers()], dtype=bool)

    def markers(self) -> list[bool | str]:
        """Each batch's completion marker: ``True``, ``False``, or ``"unreadable"`` (damaged)."""
        return [bool(v) if v is not None else UNREADABLE for v in validate.rows_or_none(self._array("done"))]

    def records(self) -> list[dict[str, Any] | str | None]:
        """Each batch's record (module docstring): a dict, ``None`` when it has none (not
        stored yet, or a store from before the records), or ``"unreadable"`` (damaged)."""
        if RECORDS not in self._arrays:
            return [None] * self._array("done").shape[0]
        return [_parse_record(text) for text in validate.rows_or_none(self._array(RECORDS))]

    def verify(self, checksums: bool = True) -> Any:
        """The store's health: every stored batch's chunk files against its record (their
        sizes, and with ``checksums`` their digests; a batch from before the records is
        read through zarr instead), and its markers. Returns a
        :class:`~attribkit.datasets.verify.StoreHealth` (``ok``, ``problems``,
        ``summary()``, ``to_dict()``)."""
        from attribkit.datasets.verify import verify_store

        return verify_store(self, checksums=checksums)

    @property
    def done(self) -> np.ndarray:
        """One flag per image: its batch is stored."""
        return np.repeat(self.batches_done, self.batch_size)[:len(self)]

    @property
    def complete(self) -> bool:
        """Every batch is stored."""
        return bool(self.batches_done.all())

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(id, reason)`` of every item left out: files of the folder that are not
        images, and stored items that could not be read."""
        errors = self._array("errors")[:]
        bad = np.flatnonzero((errors != "") & self.done)
        ids = self.ids
        return [tuple(pair) for pair in self.meta.get("skipped_files", [])] + [
            (str(ids[i]), str(errors[i])) for i in bad]

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{int(self.done.sum())} of {len(self)} images stored"
        return f"AttributionStore('{self.path}', {len(self)} images, methods {self.methods}, {state})"

    # ------------------------------------------------------------------ writing

    def write_batch(self, batch: int, start: int, columns: Mapping[str, np.ndarray],
                    inputs: list[str] | None = None) -> None:
        """Write batch ``batch`` (rows from ``start``): every column, then its record (the
        chunk files' sizes and digests, and ``inputs``: a digest per item), then its marker.

        Each column is chunk ``batch`` of its array, written straight to its file
        (:mod:`attribkit.datasets.chunks`) where the array allows it, else through zarr."""
        chunks = {key: self._write_rows(key, batch, start, values) for key, values in columns.items()}
        if RECORDS in self._arrays:
            record = json.dumps({"chunks": chunks, "inputs": inputs}, separators=(",", ":"))
            self._write_rows(RECORDS, batch, batch, np.array([record], dtype=object))
        self._write_rows("done", batch, batch, np.ones(1, dtype=bool))

    def _write_rows(self, key: str, batch: int, start: int, values: np.ndarray) -> list[Any] | None:
        """Write chunk ``batch`` of ``key``; returns ``[size, digest]`` of its file (``None``: no file)."""
        from attribkit.datasets.chunks import chunk_path, chunk_writer
        from attribkit.datasets.fingerprint import chunk_digest, file_record

        if key not in self._writers:
            self._writers[key] = chunk_writer(self._array(key))
        write = self._writers[key]
        array = self._array(key)
        if write is not None and start == batch * array.chunks[0] and len(values) <= array.chunks[0]:
            payload = write(batch, values)
            return [len(payload), chunk_digest(payload)]
        array[start:start + len(values)] = values
        return file_record(chunk_path(array, batch))

    def unmark(self, batches: list[int]) -> None:
        """Remove the completion markers of ``batches`` (found damaged: computed again)."""
        for batch in batches:
            self._write_rows("done", batch, batch, np.zeros(1, dtype=bool))

    def add_run(self, record: Mapping[str, Any]) -> None:
        """Append a run record to the metadata (one process: rank 0)."""
        self.meta["runs"] = [*self.runs, dict(record)]
        self._group.attrs["attribkit"] = self.meta


def open_store(path: str | Path) -> AttributionStore:
    """Open the store an ``explain_dataset`` run wrote at ``path``, read-only."""
    return _open(path, "r")


def open_writable(path: str | Path) -> AttributionStore:
    """Open an existing store to write batches into (each process of a run)."""
    return _open(path, "r+")


# A run whose metadata has one of these keys is read by its own store class, named
# as "module:class" (a subclass of AttributionStore; looked up on use, so this
# module imports none of them).
STORE_READERS: dict[str, str] = {"text": "attribkit.datasets.text_store:TextStore"}


def _open(path: str | Path, mode: str) -> AttributionStore:
    zarr = zarr_module()
    path = Path(path)
    if not (path / "zarr.json").is_file():
        what = "does not exist" if not path.exists() else "is not a zarr store (it has no zarr.json)"
        raise StoreError(f"{path} {what}")
    document = validate.read_json(path / "zarr.json")
    if not isinstance(document, dict) or document.get("node_type") != "group":
        raise StoreError(f"{path / 'zarr.json'} does not describe a zarr group ({validate.DAMAGED})")
    try:
        group = zarr.open_group(path, mode=mode)
    except Exception as exc:  # noqa: BLE001 - zarr's errors for malformed metadata vary
        raise StoreError(f"{path / 'zarr.json'} cannot be opened as a zarr group: {type(exc).__name__}: "
                         f"{exc} ({validate.DAMAGED})") from None
    meta = group.attrs.asdict().get("attribkit")
    for key, reader in STORE_READERS.items():
        if isinstance(meta, Mapping) and key in meta:
            module, name = reader.split(":")
            return getattr(importlib.import_module(module), name)(group)
    return AttributionStore(group)


def _parse_record(text: Any) -> dict[str, Any] | str | None:
    if text is None:
        return UNREADABLE
    if text == "":
        return None
    try:
        record = json.loads(str(text))
    except json.JSONDecodeError:
        return UNREADABLE
    return record if isinstance(record, dict) and isinstance(record.get("chunks"), dict) else UNREADABLE


def create_store(path: Path, meta: Mapping[str, Any], columns: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                 items: int, batch_size: int, map_codecs: Any = None) -> AttributionStore:
    """A new store at ``path`` (absent or an empty folder) with one array per
    column (``name -> (row shape, dtype)``) of ``items`` rows chunked by ``batch_size``;
    the maps compressed by ``map_codecs`` (zarr codecs; ``None``: uncompressed), the
    other columns by zarr's default."""
    zarr = zarr_module()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise StoreError(f"{path} exists and is not an attribkit store; refusing to write into it "
                         "(pass another output path)")
    group = zarr.open_group(path, mode="w", attributes={"attribkit": {"format": FORMAT, **meta}})
    for name, (shape, dtype) in columns.items():
        dtype = np.dtype(dtype)
        group.create_array(name, shape=(items, *shape), chunks=(batch_size, *shape),
                           dtype=str if dtype.kind in "OU" else dtype, fill_value=fill_value(dtype),
                           compressors=map_codecs if name.startswith(("maps/", "matrices/")) else "auto")
    _create_records(group, -(-items // batch_size))
    group.create_array("done", shape=(-(-items // batch_size),), chunks=(1,), dtype=bool, fill_value=False)
    return AttributionStore(group)


def _create_records(group: Any, batches: int) -> None:
    group.create_array(RECORDS, shape=(batches,), chunks=(1,), dtype=str, fill_value="")


def resume_store(path: Path, settings: Mapping[str, Any]) -> AttributionStore:
    """The writable store at ``path`` if it was written with these ``settings``, else
    :class:`StoreError` naming what differs. Temporary files of a killed writer are removed."""
    store = _open(path, "r+")
    stored = {**UNSTATED_SETTINGS, **store.settings}
    differences = [f"{key} was {_short(stored.get(key))}, now {_short(settings.get(key))}"
                   for key in sorted(set(stored) | set(settings))
                   if stored.get(key) != settings.get(key)]
    if differences:
        raise StoreError(f"{path} holds the results of another run ({'; '.join(differences)}); "
                         f"pass another output path, or delete {path} to start over")
    for leftover in path.rglob("*.partial"):
        if _PARTIAL.fullmatch(leftover.name):
            leftover.unlink(missing_ok=True)
    if RECORDS not in store._arrays:  # a store from before the records: later batches get theirs
        _create_records(store._group, store._array("done").shape[0])
        store = _open(path, "r+")
    return store


def _short(value: Any, size: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= size else text[:size - 3] + "..."


def verify_path(path: str | Path, checksums: bool = True) -> Any:
    """:meth:`AttributionStore.verify` of the store at ``path``; a store that cannot be
    opened is reported as a problem of the returned ``StoreHealth``, not raised."""
    from attribkit.datasets.verify import StoreHealth

    try:
        store = open_store(path)
    except StoreError as exc:
        return StoreHealth(path=str(path), checksums=checksums, problems=[str(exc)])
    return store.verify(checksums=checksums)
