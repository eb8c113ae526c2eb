"""``results.jsonl``: the append-only file of a bench run's result records, safe to resume."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path


class ResultsFileWarning(UserWarning):
    """A line of ``results.jsonl`` is not a result record (torn or damaged) and was skipped."""


class ResultStore:
    """Append-only JSONL of result records, keyed by (run, method, metric).

    Writing: each record is one whole line written with a single ``os.write``
    on a descriptor opened with ``O_APPEND``, then ``fsync``-ed. A crash or a
    kill of the process cannot tear a row: it comes before that one system
    call or after it (a buffered file object makes no such promise; it may
    write a long line in pieces). The fsync (0.4 to 5 ms per record measured on
    ext4, against the seconds even a tiny record takes) keeps the rows through
    a power cut too.
    A temporary file renamed over ``results.jsonl`` would be as safe but
    rewrites the whole file for every record.

    Reading (resume): a last line without its newline that does not parse was
    torn (a full disk, a power cut, an older writer); it is dropped with a
    :class:`ResultsFileWarning` and cut from the file before the next append,
    so its result is computed again. A last line that parses but lacks its
    newline gets one before the next append, so rows are never glued. Any
    other line that is not a result record (the file was damaged there) is
    skipped with a warning and left in place.
    """

    def __init__(self, path: Path, run: str) -> None:
        self.path = Path(path)
        self.run = run
        self.records: dict[tuple[str, str], dict] = {}
        self._torn_at: int | None = None  # byte offset of a torn last line, cut before the next append
        self._unterminated = False  # the last line lacks its newline
        if self.path.exists():
            self._load(self.path.read_bytes())

    def _load(self, data: bytes) -> None:
        start = 0
        for number, line in enumerate(data.split(b"\n"), start=1):
            end = start + len(line)
            if line.strip():
                record = _parse_record(line)
                if record is None and end == len(data):
                    self._torn_at = start
                    warnings.warn(f"{self.path}: line {number} is torn ({_excerpt(line)}), cut off while it "
                                  "was written; dropped, its result is computed again",
                                  ResultsFileWarning, stacklevel=3)
                elif record is None:
                    warnings.warn(f"{self.path}: line {number} is not a result record ({_excerpt(line)}), "
                                  "the file is damaged there; skipped", ResultsFileWarning, stacklevel=3)
                elif record["run"] == self.run:
                    self.records[(record["method"], record["metric"])] = record
            start = end + 1
        self._unterminated = self._torn_at is None and not data.endswith(b"\n") and bool(data)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.records

    def add(self, record: dict) -> None:
        """Append ``record`` (tagged with this run) as one line and keep it in :attr:`records`."""
        record = {"run": self.run, **record}
        data = (b"\n" if self._unterminated else b"") + (json.dumps(record) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._torn_at is not None:
            os.truncate(self.path, self._torn_at)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"{self.path}: wrote {written} of {len(data)} bytes of a result row (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._torn_at, self._unterminated = None, False
        self.records[(record["method"], record["metric"])] = record


def _parse_record(line: bytes) -> dict | None:
    """The result record on ``line``, or None when it is not one."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None
    if isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("run", "method", "metric")):
        return record
    return None


def _excerpt(line: bytes, size: int = 60) -> str:
    text = line.decode(errors="replace")
    return repr(text) if len(text) <= size else f"{text[:size]!r}... {len(line)} bytes"
