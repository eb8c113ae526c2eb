"""explain_dataset's whole pipeline vs the bare method, timed alternately in one process.

    python benchmarks/dataset_throughput.py [--model resnet18] [--images 192] [--batch 32]
        [--method gradcam] [--workers 1] [--rounds 3] [--device cpu]
    python benchmarks/dataset_throughput.py --preloaded --model tiny --images 8192 --size 32 --batch 128
        [--dtype float16] [--compressor zstd] [--threads N] [--profile OUT.prof]

JPEG files of an image folder (decoded by DataLoader workers) through
``explain_dataset`` into a fresh store, against ``explain`` on the same images
already in memory, one call per batch. With ``--preloaded`` the data is a
``TensorDataset`` of ``(image, label)`` in memory instead (``--size`` px random
images; ``--model tiny``: attribkit.testing's TinyCNN): where compute is cheap,
this shows the pipeline's own overhead. The two alternate round by round, so a
shared machine's load affects both alike (which goes first alternates too); the
ratio of each round and their median are printed, in wall time and in this
process's CPU time. Goal: the pipeline <= 1.25x the bare method.
``--profile OUT.prof`` writes a cProfile of one extra pipeline run (all threads
but the DataLoader workers are in it only as far as cProfile sees the main thread).
(``benchmarks/test_datasets.py`` is the same comparison under pytest-benchmark.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image

import attribkit as ak


def make_folder(root: Path, n: int) -> None:
    """``n`` smooth random 293x256 JPEGs (a camera picture's decoding cost, roughly)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(small).resize((293, 256)).save(root / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--method", default="gradcam")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default 1; preloaded: 0)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preloaded", action="store_true",
                        help="a TensorDataset of (image, label) in memory instead of a JPEG folder")
    parser.add_argument("--size", type=int, default=224, help="image side (default 224)")
    parser.add_argument("--dtype", default="float32", help="the maps' stored dtype")
    parser.add_argument("--compressor", default=None, help="the maps' compressor (default: none)")
    parser.add_argument("--profile", help="cProfile one more pipeline run into this file")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    root = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.model == "tiny":
        from attribkit.testing import TinyCNN

        model = TinyCNN(classes=10).eval().to(device)
    else:
        model = torchvision.models.get_model(args.model).eval().to(device)
    if args.preloaded:
        images = torch.randn(args.images, 3, args.size, args.size)
        data = torch.utils.data.TensorDataset(images, torch.arange(args.images) % 10)
        batches = [x.to(device) for x in images.split(args.batch)]
    else:
        (root / "images").mkdir()
        make_folder(root / "images", args.images)
        data = ak.image_folder(root / "images", args.size)
        batches = [x.to(device) for (x,) in torch.utils.data.DataLoader(data, batch_size=args.batch)]
    stored = {key: value for key, value in (("dtype", args.dtype), ("compressor", args.compressor))
              if value not in (None, "float32")}  # the defaults: also runs against older versions
    if args.workers is None:
        args.workers = 0 if args.preloaded else 1
    ak.explain(model, batches[0][:2], method=args.method)  # warm-up

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def bare() -> None:
        for x in batches:
            ak.explain(model, x, method=args.method)

    def pipeline(round_: int) -> None:
        ak.explain_dataset(model, data, [args.method], root / f"run{round_}.zarr", batch_size=args.batch,
                           num_workers=args.workers, progress=False, **stored)

    def timed(work: Any) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        work()
        sync()
        return time.perf_counter() - start, time.process_time() - cpu

    ratios, cpu_ratios, bare_times, pipeline_times = [], [], [], []
    for round_ in range(args.rounds):  # which goes first alternates: a drifting load hits both alike
        if round_ % 2 == 0:
            (bare_s, bare_cpu), (pipeline_s, pipeline_cpu) = timed(bare), timed(lambda: pipeline(round_))
        else:
            (pipeline_s, pipeline_cpu), (bare_s, bare_cpu) = timed(lambda: pipeline(round_)), timed(bare)
        bare_times.append(bare_s)
        pipeline_times.append(pipeline_s)
        ratios.append(pipeline_s / bare_s)
        cpu_ratios.append(pipeline_cpu / bare_cpu)
        print(f"round {round_}: bare {bare_s:.2f} s ({bare_cpu:.2f} s CPU), pipeline {pipeline_s:.2f} s "
              f"({pipeline_cpu:.2f} s CPU), ratio {ratios[-1]:.3f} (CPU {cpu_ratios[-1]:.3f})", flush=True)
    where = "preloaded" if args.preloaded else f"{args.workers} workers"
    print(f"{args.model} {args.method}, {args.images} images of {args.size}x{args.size}, batch {args.batch}, "
          f"{where}, {device}, {torch.get_num_threads()} torch threads: pipeline / bare median "
          f"{statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}; this process's CPU "
          f"time: median {statistics.median(cpu_ratios):.3f}); bare {args.images / min(bare_times):.1f} img/s, "
          f"pipeline {args.images / min(pipeline_times):.1f} img/s")
    if args.profile:
        import cProfile

        cProfile.runctx("ak.explain_dataset(model, data, [args.method], root / 'profiled.zarr', "
                        "batch_size=args.batch, num_workers=args.workers, progress=False, **stored)",
                        globals(), {"ak": ak, "model": model, "data": data, "args": args, "root": root,
                                    "stored": stored}, args.profile)
        print(f"profile: {args.profile}")


if __name__ == "__main__":
    main()
