"""Warnings raised while a method runs go into its records, not onto the terminal."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_WARNINGS = 10  # distinct warnings kept per record


@contextlib.contextmanager
def recording_warnings() -> Iterator[list[str]]:
    """Record the warnings raised in the body instead of showing them; the list it
    yields is filled on exit with up to :data:`MAX_WARNINGS` distinct short texts
    ``"Category: message (package/module.py:line)"``. The active filters still apply
    (``-W error`` makes them errors, ``ignore`` drops them)."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield found
        finally:
            found.extend(distinct(
                f"{w.category.__name__}: {_shorten(str(w.message))} ({_where(w.filename, w.lineno)})"
                for w in caught))


def distinct(texts: Iterable[str]) -> list[str]:
    """``texts`` without repeats, at most :data:`MAX_WARNINGS` of them."""
    return list(dict.fromkeys(texts))[:MAX_WARNINGS]


def _shorten(text: str, size: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 3] + "..."


def _where(filename: str, lineno: int) -> str:
    """``filename`` relative to the ``sys.path`` entry holding it (``captum/attr/x.py:12``)."""
    path = Path(filename)
    roots = [Path(p) for p in sys.path if p and path.is_relative_to(p)]
    if roots:
        path = path.relative_to(max(roots, key=lambda r: len(r.parts)))
    return f"{path.as_posix()}:{lineno}"
