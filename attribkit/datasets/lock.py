"""One writer per store: an OS file lock beside it, ``RUN.zarr.lock``.

:func:`explain_dataset <attribkit.datasets.run.explain_dataset>` holds the lock
from before it looks at the store until it returns (under ``torchrun``, rank 0
holds it for all the ranks, which share the work by batches). A second process
that tries to write the same store is refused at once with a
:class:`~attribkit.errors.StoreError` naming the process that holds it (its pid,
host, start time and command, which the holder writes into the lock file).

The lock is ``flock(2)`` on the file: the kernel releases it when its holder
exits, however it exits, so a lock file left by a killed process is stale and is
simply taken over. The holder removes the file when it is done. ``flock`` is
per host on most network file systems: two hosts writing one store on NFS are
not kept apart (``torchrun``'s ranks are coordinated by their rank, not by this).
Without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from attribkit.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(store: str | Path) -> Path:
    """The lock file of the store at ``store``: ``RUN.zarr.lock`` beside it (symlinks resolved)."""
    resolved = Path(store).resolve()
    return resolved.with_name(resolved.name + ".lock")


class StoreLock:
    """The writer's lock on the store at ``store``; :meth:`acquire` it, :meth:`release` it
    (or use it as a context manager)."""

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store)
        self.path = lock_path(store)
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        """Take the lock, or raise :class:`StoreError` naming the process that holds it."""
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise StoreError(f"{self.store} is being written by another process ({holder}); wait for it "
                                 f"to finish, or write to another path (its lock: {self.path})") from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder removed the file we opened as it finished: open the new one
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_me()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing when it is not held)."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *_: Any) -> None:
        self.release()


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:300]}


def _read_holder(fd: int) -> str:
    """The holder's description from the lock file's contents (it writes them once locked)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode())
        text = f"pid {info['pid']} on {info['host']}, since {info['started']}"
        return text + (f": {info['command']}" if info.get("command") else "")
    except (OSError, ValueError, KeyError, TypeError):
        return "it has not said which yet"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
