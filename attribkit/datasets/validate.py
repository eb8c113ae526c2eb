"""Checks of a store's metadata before anything reads it: a damaged or edited store
is a :class:`~attribkit.datasets.store.StoreError` naming the file and the key, never a
raw ``JSONDecodeError``, ``AttributeError`` or ``TypeError`` from deep in a reader.

:func:`read_json` reads one ``zarr.json``; :func:`check_meta` checks the attributes
attribkit wrote into the group's (``attributes["attribkit"]``); :func:`check_arrays`
opens every array the metadata promises and checks its rows and chunks;
:func:`rows_or_none` reads a 1-d array of one-row chunks past its damaged ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attribkit.errors import StoreError

DAMAGED = "the store's metadata was damaged or edited"

def read_json(path: Path) -> Any:
    """The JSON document at ``path``; :class:`StoreError` when it is missing or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"{path} is missing ({DAMAGED})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} cannot be read: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        cut = " (it ends early: truncated?)" if not text.rstrip().endswith("}") else ""
        raise StoreError(f"{path} is not valid JSON{cut}: {exc.msg} (line {exc.lineno}, column "
                         f"{exc.colno}); {DAMAGED}") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _expect(ok: bool, where: str, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise StoreError(f"{where}: {key} is {_kind(value)} ({_short(value)}), expected {expected} "
                            f"({DAMAGED})")


def _short(value: Any, size: int = 60) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= size else text[:size - 3] + "..."


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_meta(meta: Mapping[str, Any], where: str) -> None:
    """Check the keys of attribkit's metadata that readers rely on (``where``: the file, for
    the message). The settings' other keys are compared as they are when a run resumes."""
    p = "attributes.attribkit"
    settings = meta.get("settings")
    _expect(isinstance(settings, dict), where, f"{p}.settings", settings, "an object")
    methods = settings.get("methods")
    _expect(_str_list(methods) and bool(methods), where, f"{p}.settings.methods", methods,
            "a non-empty list of method names")
    _expect(_str_list(settings.get("metrics", [])), where, f"{p}.settings.metrics", settings.get("metrics"),
            "a list of metric names")
    _expect(_is_int(settings.get("batch_size"), 1), where, f"{p}.settings.batch_size",
            settings.get("batch_size"), "a positive integer")
    data = settings.get("data")
    _expect(isinstance(data, dict), where, f"{p}.settings.data", data, "an object")
    _expect(_is_int(data.get("items"), 0), where, f"{p}.settings.data.items", data.get("items"),
            "an integer >= 0")
    layers = meta.get("layers")
    _expect(isinstance(layers, dict) and all(v is None or isinstance(v, str) for v in layers.values()),
            where, f"{p}.layers", layers, "an object of layer names")
    classes = meta.get("classes")
    _expect(classes is None or _str_list(classes), where, f"{p}.classes", classes, "a list of names or null")
    skipped = meta.get("skipped_files", [])
    _expect(isinstance(skipped, list) and all(isinstance(s, list) and len(s) == 2 and _str_list(s)
                                              for s in skipped),
            where, f"{p}.skipped_files", skipped, "a list of [file, reason] pairs")
    runs = meta.get("runs", [])
    _expect(isinstance(runs, list) and all(isinstance(r, dict) for r in runs), where, f"{p}.runs", runs,
            "a list of run records")
    images = meta.get("images")
    _expect(images is None or (isinstance(images, dict) and isinstance(images.get("root"), str)), where,
            f"{p}.images", images, "an object with the image folder's root")


def expected_arrays(meta: Mapping[str, Any]) -> list[str]:
    """The arrays every store with this metadata has (optional columns aside)."""
    settings = meta["settings"]
    return ["ids", "errors", "done",
            *(f"maps/{m}" for m in settings["methods"]),
            *(f"metrics/{m}/{k}" for m in settings["methods"] for k in settings.get("metrics", []))]


def check_array(group: Any, root: Path, key: str, rows: int, chunk_rows: int) -> Any:
    """The zarr array ``key`` of ``group`` (stored at ``root``), after checking that its
    ``zarr.json`` reads and that it has ``rows`` rows in chunks of ``chunk_rows``."""
    where = root / key / "zarr.json"
    document = read_json(where)
    if not isinstance(document, dict) or document.get("node_type") != "array":
        raise StoreError(f"{where} does not describe a zarr array ({DAMAGED})")
    try:
        array = group[key]
        shape, chunks = tuple(array.shape), tuple(array.chunks)
    except Exception as exc:  # noqa: BLE001 - zarr's errors for malformed metadata vary
        raise StoreError(f"{where} cannot be opened as a zarr array: {type(exc).__name__}: {exc} "
                            f"({DAMAGED})") from None
    if not shape or shape[0] != rows or chunks[0] != chunk_rows:
        raise StoreError(f"{where}: the array has shape {list(shape)} in chunks of {list(chunks)}; the "
                            f"store's settings say {rows} rows in chunks of {chunk_rows} ({DAMAGED})")
    return array


def rows_or_none(array: Any) -> list[Any]:
    """Every element of the 1-d ``array`` (one per chunk), ``None`` for those whose chunk
    cannot be decoded (a damaged file): the rest still read."""
    try:
        return list(array[:])
    except Exception:  # noqa: BLE001 - a damaged chunk: zarr's decoding errors vary
        pass
    values = []
    for i in range(array.shape[0]):
        try:
            values.append(array[i])
        except Exception:  # noqa: BLE001
            values.append(None)
    return values
