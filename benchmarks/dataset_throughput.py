"""explain_dataset's whole pipeline vs the bare method, timed alternately in one process.

    python benchmarks/dataset_throughput.py [--model resnet18] [--images 192] [--batch 32]
        [--method gradcam] [--workers 1] [--rounds 3] [--device cpu]

JPEG files of an image folder (decoded by DataLoader workers) through
``explain_dataset`` into a fresh store, against ``explain`` on the same images
already in memory, one call per batch. The two alternate round by round, so a
shared machine's load affects both alike; the ratio of each round and their
median are printed. Goal: the pipeline <= 1.25x the bare method.
(``benchmarks/test_datasets.py`` is the same comparison under pytest-benchmark.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

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
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp())
    (root / "images").mkdir()
    make_folder(root / "images", args.images)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = torchvision.models.get_model(args.model).eval().to(device)
    data = ak.image_folder(root / "images", 224)
    batches = [x.to(device) for (x,) in torch.utils.data.DataLoader(data, batch_size=args.batch)]
    ak.explain(model, batches[0][:2], method=args.method)  # warm-up

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    ratios, bare_times, pipeline_times = [], [], []
    for round_ in range(args.rounds):
        start = time.perf_counter()
        for x in batches:
            ak.explain(model, x, method=args.method)
        sync()
        bare_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ak.explain_dataset(model, data, [args.method], root / f"run{round_}.zarr", batch_size=args.batch,
                           num_workers=args.workers, progress=False)
        sync()
        pipeline_times.append(time.perf_counter() - start)
        ratios.append(pipeline_times[-1] / bare_times[-1])
        print(f"round {round_}: bare {bare_times[-1]:.2f} s, pipeline {pipeline_times[-1]:.2f} s, "
              f"ratio {ratios[-1]:.3f}", flush=True)
    print(f"{args.model} {args.method}, {args.images} images of 224x224, batch {args.batch}, "
          f"{args.workers} workers, {device}: pipeline / bare median {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f}); bare {args.images / min(bare_times):.1f} img/s, "
          f"pipeline {args.images / min(pipeline_times):.1f} img/s")


if __name__ == "__main__":
    main()
