"""Timing and memory of a call, interleaved with its floor so that both see the
same machine state (this matters on shared, noisy machines)."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch


def _once(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call: CUDA events on a GPU, ``perf_counter`` on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def interleaved_times(calls: dict[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 1,
                      device: torch.device = torch.device("cpu")) -> dict[str, list[float]]:
    """Time every call ``repeats`` times after ``warmup`` runs, round-robin
    (call A, B, C, A, B, C, ...) so slow phases of a shared machine hit all alike."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(_once(fn, device))
    return times


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call in MiB: ``torch.cuda.max_memory_allocated`` above the
    level before the call on a GPU; on the CPU the growth of the process's peak
    RSS (``ru_maxrss``), which is 0 when the call stays below an earlier peak."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def median(values: list[float]) -> float:
    return statistics.median(values)
