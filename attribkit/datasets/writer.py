"""Writes batches to the store on a background thread, so that computing batch
``b + 1`` overlaps writing batch ``b``.

At most ``pending`` batches wait (:meth:`BatchWriter.put` blocks beyond that),
so memory stays bounded by a few batches whatever the dataset's size. A
write's error is raised by the next :meth:`~BatchWriter.put` or by
:meth:`~BatchWriter.close`; on the way out through an exception the batches
already queued are still written (they are complete) and the thread is joined.
An ``OSError`` of a write (a full disk) is raised as a
:class:`~attribkit.errors.StoreWriteError` naming the batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from attribkit.datasets.store import AttributionStore
from attribkit.errors import StoreWriteError

_STOP = object()


class BatchWriter:
    """One writer thread for ``store``; use as a context manager."""

    def __init__(self, store: AttributionStore, pending: int = 2) -> None:
        self.store = store
        self._queue: queue.Queue = queue.Queue(maxsize=pending)
        self._error: BaseException | None = None  # the first failed write; later batches are dropped
        self._raised = False
        self._thread = threading.Thread(target=self._run, name="attribkit-store-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            if self._error is None:
                batch, start, columns, inputs = job
                try:
                    self.store.write_batch(batch, start, columns, inputs=None if inputs is None else inputs())
                except OSError as exc:  # a full disk, a file too large: the caller says what is kept
                    error = StoreWriteError(f"writing batch {batch} to {getattr(self.store, 'path', 'the store')} "
                                            f"failed: {exc}")
                    error.__cause__ = exc
                    self._error = error
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def put(self, batch: int, start: int, columns: Mapping[str, np.ndarray],
            inputs: Callable[[], list[str]] | None = None) -> None:
        """Queue batch ``batch`` (rows from ``start``); waits while ``pending`` are queued.
        ``inputs`` gives the rows' input digests, computed on the writer's thread (hashing
        releases the GIL, so it overlaps the next batch's work)."""
        self._raise()
        self._queue.put((batch, start, columns, inputs))

    def close(self) -> None:
        """Write what is queued, stop the thread, raise a write's error."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # the original error wins; what was queued is still written
            try:
                self.close()
            except Exception:  # noqa: BLE001
                pass
