"""One comparison group (a floor, attribkit, its peers) timed in the same run, and the
rows it gives.

Timing is :func:`attribkit.bench.timing.interleaved_times` (CUDA events on a GPU),
peak memory :func:`attribkit.bench.timing.peak_memory_mb` (CUDA only). Each call
runs guarded: one that raises (a missing peer, an option the method lacks, CUDA
out of memory) becomes a row marked skipped with the reason, and the others go on.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from attribkit.bench.timing import interleaved_times, median, peak_memory_mb
from benchmarks.gpu.config import Config

FLOOR, ATTRIBKIT, PEER = "floor", "attribkit", "peer"


@dataclasses.dataclass
class Row:
    """One implementation's result in one group.

    ``vs_floor``: median over the group floor's median. ``vs_peer``: for attribkit's
    row, its median over each peer's (below 1: attribkit is faster); for a peer's
    row, its median over attribkit's. ``peak_mb``: peak CUDA memory of one call
    above the level before it (``None`` on a CPU).
    """

    section: str
    method: str
    implementation: str  # floor / attribkit / peer
    name: str
    status: str = "ok"  # ok / skipped
    median_ms: float | None = None
    repeats: int = 0
    vs_floor: float | None = None
    vs_peer: dict[str, float] = dataclasses.field(default_factory=dict)
    peak_mb: float | None = None
    reason: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Impl:
    """One implementation to time: ``fn`` is ``None`` when it cannot run (``reason``)."""

    implementation: str
    name: str
    fn: Callable[[], object] | None
    reason: str | None = None


def reason_of(exc: BaseException) -> str:
    """A one-line reason: the exception's type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def peer_impls(method: str, call: Callable[[Callable[..., Any]], Callable[[], object]]) -> list[Impl]:
    """The peers of ``method`` in :mod:`attribkit.bench.peers`: ``call(peer)`` makes the
    timed call of each installed one; one not installed gets an ``Impl`` without ``fn``."""
    from attribkit.bench.peers import PEERS, peer_calls

    calls = peer_calls(method)
    impls = []
    for entry in PEERS:
        if entry.method != method or entry.needs:
            continue
        if entry.library in calls:
            impls.append(Impl(PEER, entry.library, call(calls[entry.library])))
        elif all(i.name != entry.library for i in impls):
            impls.append(Impl(PEER, entry.library, None, reason=f"{entry.library} is not installed"))
    return impls


def skipped(section: str, method: str, implementation: str, name: str, reason: str) -> Row:
    """A row that did not run, with the reason."""
    return Row(section, method, implementation, name, status="skipped", reason=reason)


def _guarded(name: str, fn: Callable[[], object], failed: dict[str, str], peaks: dict[str, float],
             device: torch.device) -> Callable[[], None]:
    """``fn`` that records its failure instead of raising (and is not run again after
    one), and its peak CUDA memory."""

    def call() -> None:
        if name in failed:
            return
        try:
            if device.type == "cuda":
                peaks[name] = max(peaks.get(name, 0.0), peak_memory_mb(fn, device))
            else:
                fn()
        except Exception as exc:  # noqa: BLE001 - a failing implementation is a skipped row
            failed[name] = reason_of(exc)
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return call


def compare(section: str, method: str, impls: list[Impl], config: Config, *, warmup: int = 1,
            repeats: int | None = None) -> list[Row]:
    """Time ``impls`` round-robin on ``config.device`` and return one row each.

    ``warmup`` untimed rounds come first, then one timed round; the remaining
    ``repeats - 1`` rounds (default ``config.repeats``) are cut so that they fit in
    ``config.group_budget_s`` by the first round's times.
    """
    repeats = config.repeats if repeats is None else repeats
    failed: dict[str, str] = {}
    peaks: dict[str, float] = {}
    ready = {i.name: i for i in impls if i.fn is not None}
    calls = {name: _guarded(name, i.fn, failed, peaks, config.device) for name, i in ready.items()}
    times = interleaved_times(calls, repeats=1, warmup=warmup, device=config.device) if calls else {}
    first = sum(t for name, ts in times.items() if name not in failed for t in ts)
    more = min(repeats - 1, int(config.group_budget_s / first) - 1) if first > 0 else repeats - 1
    alive = {name: call for name, call in calls.items() if name not in failed}
    if more > 0 and alive:
        for name, ts in interleaved_times(alive, repeats=more, warmup=0, device=config.device).items():
            times[name].extend(ts)
    medians = {name: median(ts) for name, ts in times.items() if name not in failed}
    return _rows(section, method, impls, medians, times, failed, peaks)


def _rows(section: str, method: str, impls: list[Impl], medians: dict[str, float],
          times: dict[str, list[float]], failed: dict[str, str], peaks: dict[str, float]) -> list[Row]:
    """Rows with the ratios to the floor and between attribkit and its peers."""
    floor = next((medians[i.name] for i in impls if i.implementation == FLOOR and i.name in medians), None)
    ours = next((medians[i.name] for i in impls if i.implementation == ATTRIBKIT and i.name in medians), None)
    peers = {i.name: medians[i.name] for i in impls if i.implementation == PEER and i.name in medians}
    rows = []
    for impl in impls:
        if impl.name not in medians:
            reason = impl.reason or failed.get(impl.name, "did not run")
            rows.append(skipped(section, method, impl.implementation, impl.name, reason))
            continue
        t = medians[impl.name]
        if impl.implementation == ATTRIBKIT:
            vs_peer = {name: _ratio(t, p) for name, p in peers.items()}
        elif impl.implementation == PEER and ours is not None:
            vs_peer = {"attribkit": _ratio(t, ours)}
        else:
            vs_peer = {}
        rows.append(Row(section, method, impl.implementation, impl.name, median_ms=t * 1e3,
                        repeats=len(times[impl.name]), vs_floor=_ratio(t, floor) if floor else None,
                        vs_peer=vs_peer, peak_mb=peaks.get(impl.name)))
    return rows


def _ratio(a: float, b: float) -> float:
    """``a / b``, rounded to 4 digits (``nan`` when ``b`` is 0)."""
    return round(a / b, 4) if b > 0 else math.nan


class Stopwatch:
    """Seconds since construction (``elapsed``)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
