"""Shared settings of the benchmark suites and a ratio summary.

Environment: ``ATTRIBKIT_BENCH_DEVICE`` (default ``cuda`` if available, else
``cpu``), ``ATTRIBKIT_BENCH_BATCH`` (default 64 on CUDA, 4 on CPU),
``ATTRIBKIT_BENCH_SIZE`` (input side, default 224), ``ATTRIBKIT_BENCH_MODELS``
(comma-separated torchvision names, default ``resnet18,resnet50``),
``ATTRIBKIT_BENCH_ALL=1`` to include the methods that run one forward per
channel or noisy sample (Score-CAM, Ablation-CAM, SmoothGrad: minutes on a CPU).

After the run, a table gives each benchmark's median relative to its group's
floor (the entry whose ``extra_info["role"]`` is ``floor``), all measured in
the same run.
"""

import os

import pytest
import torch


def bench_device() -> torch.device:
    name = os.environ.get("ATTRIBKIT_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bench_batch() -> int:
    default = 64 if bench_device().type == "cuda" else 4
    return int(os.environ.get("ATTRIBKIT_BENCH_BATCH", default))


def bench_size() -> int:
    return int(os.environ.get("ATTRIBKIT_BENCH_SIZE", 224))


def bench_models() -> list[str]:
    return os.environ.get("ATTRIBKIT_BENCH_MODELS", "resnet18,resnet50").split(",")


def sync() -> None:
    if bench_device().type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture
def run(benchmark):
    """``run(fn, role, impl)``: time ``fn`` (synchronising CUDA) with warm-up, tagged by
    role (floor / attribkit / peer) and implementation name."""

    def timed(fn, role, impl=None):
        benchmark.extra_info["role"] = role
        benchmark.extra_info["impl"] = impl or role

        def call():
            out = fn()
            sync()
            return out

        rounds = int(os.environ.get("ATTRIBKIT_BENCH_ROUNDS", 5))
        return benchmark.pedantic(call, rounds=rounds, warmup_rounds=1, iterations=1)

    return timed


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    groups: dict[str, list] = {}
    for bench in session.benchmarks:
        if bench.stats.rounds:  # a benchmark that raised has no timings
            groups.setdefault(bench.group, []).append(bench)
    lines = ["", f"time relative to the group's floor, median and min over rounds (device "
                 f"{bench_device()}, batch {bench_batch()}, {bench_size()}x{bench_size()})"]
    for group, benches in sorted(groups.items()):
        floors = [b for b in benches if b.extra_info.get("role") == "floor"]
        if not floors:
            continue
        floor = floors[0].stats
        lines.append(f"  {group}  (floor median {floor.median * 1e3:.1f} ms)")
        for b in sorted(benches, key=lambda b: b.stats.median):
            label = b.extra_info.get("impl", b.name)
            lines.append(f"    {label:18s} median {b.stats.median / floor.median:5.2f}x  "
                         f"min {b.stats.min / floor.min:5.2f}x  {b.stats.median * 1e3:9.1f} ms")
    terminalreporter.write_line("\n".join(lines))
