"""Warnings raised while a method runs go into its records, not onto the terminal;
what a peer library prints or warns goes into its own entry (:class:`Captured`)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

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


T = TypeVar("T")
_PROGRESS = re.compile(r"^\s*\d+%\|")  # a tqdm bar's frame: " 50%|#####     | 1/2 [...]"
PROGRESS_BAR = "(a progress bar)"


@dataclasses.dataclass
class Captured:
    """What the calls made under :meth:`capture` printed (stdout and stderr) and
    warned, gathered over every call, so that a peer library's output is kept under
    the peer's name instead of reaching the terminal or the method's own record."""

    warnings: list[str] = dataclasses.field(default_factory=list)
    printed: dict[str, int] = dataclasses.field(default_factory=dict)  # line -> calls that printed it

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Redirect ``sys.stdout`` / ``sys.stderr`` and record warnings (as
        :func:`recording_warnings`) for the body."""
        out, found = io.StringIO(), []
        try:
            with recording_warnings() as found, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                yield
        finally:  # a call that fails keeps what it said too
            self.warnings = distinct([*self.warnings, *found])
            for line in printed_lines(out.getvalue()):
                self.printed[line] = self.printed.get(line, 0) + 1

    def wrap(self, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn`` run under :meth:`capture` at every call."""
        def captured() -> T:
            with self.capture():
                return fn()

        return captured

    def record(self) -> dict[str, Any]:
        """``{"warnings": [...], "printed": [...]}`` with the keys that have something:
        up to :data:`MAX_WARNINGS` distinct lines each, a line printed by several calls
        followed by ``(×N calls)``."""
        printed = [line if n == 1 else f"{line} (×{n} calls)" for line, n in self.printed.items()]
        found = {"warnings": self.warnings, "printed": printed[:MAX_WARNINGS]}
        return {k: v for k, v in found.items() if v}


def printed_lines(text: str) -> list[str]:
    """The non-blank lines of ``text`` (split at ``\\n`` and ``\\r``), shortened; the frames
    of a progress bar become one :data:`PROGRESS_BAR`."""
    lines = [_shorten(line) for line in re.split(r"[\r\n]+", text) if line.strip()]
    return list(dict.fromkeys(PROGRESS_BAR if _PROGRESS.match(line) else line for line in lines))
