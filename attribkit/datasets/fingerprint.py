"""Content digests of a dataset run: each item's input bytes and each chunk file's bytes.

Every batch's completion marker in the store has a record beside it
(:mod:`attribkit.datasets.store`): the size and digest of every chunk file the
batch wrote, and one digest per item of the inputs it was computed from. A
resumed run compares the items of the batches it skips with their digests (a
changed image is refused, not silently kept), and :mod:`attribkit.datasets.verify`
compares the chunk files with theirs (a truncated or altered chunk is found).

Digests are BLAKE2b (``hashlib``, which releases the GIL on large buffers):
8 bytes per item, 16 per chunk. They detect damage and change, not an adversary.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

ITEM_DIGEST = 8
CHUNK_DIGEST = 16


def _tensor_bytes(value: Any) -> memoryview:
    """A tensor's or array's raw bytes, without a copy when it is contiguous on the CPU."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().contiguous().numpy()
    array = np.ascontiguousarray(value)
    return memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")


def item_digests(batch: Any) -> list[str]:
    """One hex digest per row of ``batch`` (an :class:`~attribkit.datasets.items.Batch`):
    a readable row's image bytes (dtype and shape included), label and mask; an
    unreadable row's reason. Equal items give equal digests, whichever path made them."""
    digests = []
    k = 0  # the row's index among the readable rows (batch.images holds only those)
    for row in range(batch.size):
        digest = hashlib.blake2b(digest_size=ITEM_DIGEST)
        if batch.readable is not None and batch.readable[row]:
            image = batch.images[k]
            digest.update(f"image {image.dtype} {tuple(image.shape)}\0".encode())
            digest.update(_tensor_bytes(image))
            if batch.labels is not None:
                digest.update(f"\0label {int(batch.labels[row])}".encode())
            if batch.masks is not None:
                digest.update(b"\0mask")
                digest.update(_tensor_bytes(batch.masks[k].bool()))
            k += 1
        else:
            reason = batch.errors[row] if row < len(batch.errors) else ""
            digest.update(f"unreadable\0{reason}".encode())
        digests.append(digest.hexdigest())
    return digests


def chunk_digest(payload: bytes | memoryview) -> str:
    """The hex digest of a chunk file's bytes."""
    return hashlib.blake2b(payload, digest_size=CHUNK_DIGEST).hexdigest()


def file_record(path: Path) -> list[Any] | None:
    """``[size, digest]`` of the file at ``path``, or ``None`` when it does not exist
    (zarr writes no chunk whose values all equal the fill value)."""
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    return [len(payload), chunk_digest(payload)]
