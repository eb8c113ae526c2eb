"""explain_dataset's whole pipeline against the bare method on the same batches, preloaded.

The pipeline reads JPEG files of an image folder (decoded and resized by
DataLoader workers), explains each batch, takes the model's predictions, and
writes maps, ids, targets and predictions to a fresh zarr store in the
background; the floor is ``explain`` on the same images already in memory, one
call per batch. Goal: the pipeline <= 1.25x the floor.

``ATTRIBKIT_BENCH_DATASET_BATCHES`` (default 4) batches of the usual
``ATTRIBKIT_BENCH_BATCH`` images; model: the first of ``ATTRIBKIT_BENCH_MODELS``;
``ATTRIBKIT_BENCH_WORKERS`` DataLoader workers (default 2);
``ATTRIBKIT_BENCH_DATASET_METHOD`` (default ``gradcam``).
"""

import itertools
import os

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import attribkit as ak
from benchmarks.conftest import bench_batch, bench_device, bench_models, bench_size, sync

METHOD = os.environ.get("ATTRIBKIT_BENCH_DATASET_METHOD", "gradcam")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    n = bench_batch() * int(os.environ.get("ATTRIBKIT_BENCH_DATASET_BATCHES", 4))
    side = round(bench_size() * 256 / 224)
    for i in range(n):
        # smooth random pictures, so that the JPEGs cost what photographs cost to decode
        small = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((side + 37, side)).save(root / f"{i:05d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return torchvision.models.get_model(bench_models()[0]).eval().to(bench_device())


@pytest.mark.parametrize("impl", ["floor", "pipeline"])
def test_explain_dataset_pipeline(run, benchmark, folder, model, impl, tmp_path):
    benchmark.group = f"{bench_models()[0]}-{METHOD}-dataset"
    data = ak.image_folder(folder, bench_size())
    batch = bench_batch()
    if impl == "floor":
        loader = torch.utils.data.DataLoader(data, batch_size=batch)
        batches = [images.to(bench_device()) for (images,) in loader]
        run(lambda: [ak.explain(model, x, method=METHOD).values for x in batches], "floor", "explain, preloaded")
    else:
        counter = itertools.count()
        workers = int(os.environ.get("ATTRIBKIT_BENCH_WORKERS", 2))

        def pipeline():
            out = tmp_path / f"run{next(counter)}.zarr"
            store = ak.explain_dataset(model, data, [METHOD], out, batch_size=batch, num_workers=workers,
                                       progress=False)
            sync()
            assert store.complete
            return store

        run(pipeline, "attribkit", "explain_dataset")
