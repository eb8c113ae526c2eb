"""Section ``dataset``: ``explain_dataset`` over synthetic in-memory images (random
tensors, 10,000 at 224 px on the GPU) against the bare loop of ``explain`` calls on
the same images already on the device, one call per batch, as
``benchmarks/dataset_throughput.py`` does with JPEG folders. Rows give images/s of
each; the pipeline's ``vs_floor`` is pipeline time / bare time.

The pipeline's rounds write fresh stores in a temporary folder, removed afterwards.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import torch

import attribkit as ak
from benchmarks.gpu.config import Config
from benchmarks.gpu.measure import ATTRIBKIT, FLOOR, Impl, Row, compare
from benchmarks.shared import torchvision_model

SECTION = "dataset"


def synthetic_images(n: int, size: int, device: torch.device, chunk: int = 1024) -> torch.utils.data.TensorDataset:
    """``n`` random ``3 x size x size`` float images in host memory (seed 0), as a
    dataset of ``(image,)`` items; drawn on ``device`` (fast on a GPU), chunk by chunk."""
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.empty(n, 3, size, size)
    for start in range(0, n, chunk):
        count = min(chunk, n - start)
        images[start:start + count] = torch.rand(count, 3, size, size, generator=gen, device=device).cpu()
    return torch.utils.data.TensorDataset(images)


def run(config: Config) -> list[Row]:
    """Rows of the bare loop and of the pipeline, with images/s."""
    n, batch, method = config.dataset_images, config.dataset_batch, config.dataset_method
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision_model(config.dataset_model).to(config.device)
    data = synthetic_images(n, config.dataset_size, config.device)
    images = data.tensors[0]
    batches = [images[i:i + batch].to(config.device) for i in range(0, n, batch)]
    with tempfile.TemporaryDirectory(prefix="attribkit-gpu-") as folder:
        counter = itertools.count()

        def pipeline(subset: torch.utils.data.Dataset = data) -> object:
            return ak.explain_dataset(model, subset, [method], Path(folder) / f"run{next(counter)}.zarr",
                                      batch_size=batch, progress=False)

        def bare() -> None:
            for x in batches:
                ak.explain(model, x, method=method)

        # warm-up outside the timing: one batch of each (rounds of 10,000 images are too long to repeat)
        warm = [Impl(FLOOR, "explain loop", lambda: ak.explain(model, batches[0], method=method)),
                Impl(ATTRIBKIT, "explain_dataset",
                     lambda: pipeline(torch.utils.data.Subset(data, range(min(n, 2 * batch)))))]
        failed = {r.name: r.reason for r in compare(SECTION, "warm-up", warm, config, warmup=0, repeats=1)
                  if r.status != "ok"}
        impls = [Impl(FLOOR, "explain loop", bare),
                 Impl(ATTRIBKIT, "explain_dataset", None if "explain_dataset" in failed else pipeline,
                      reason=failed.get("explain_dataset"))]
        rows = compare(SECTION, f"explain_dataset {config.dataset_model} {method} {n}x{config.dataset_size}px",
                       impls, config, warmup=0, repeats=config.dataset_rounds)
    for row in rows:
        if row.status == "ok":
            row.extra["images_per_s"] = round(n / (row.median_ms / 1e3), 1)
    return rows
