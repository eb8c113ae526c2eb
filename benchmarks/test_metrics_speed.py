"""Pixel flipping in attribkit against Quantus 0.6, in the same run.

Two models: ``cnn``, a tiny CNN (one conv of 8 channels, ReLU, global average
pooling, a linear head: the kind of model Quantus's own tests use), and
``linear``, a linear classifier on the pixels, whose forwards cost next to
nothing, so that its timings are the metrics' own overhead. 64 one-channel 32x32 images,
random relevance, one pixel per step (``features_in_step=1``: 1,024 steps),
the black baseline, softmax scores, the per-image AUC: both compute exactly the
same numbers (checked below), attribkit as batched rows of (image, step),
Quantus step by step over the batch. The floor is the model's forward over all
64 x 1,024 perturbed images in batches of 256 (the work any implementation
must do). Quantus's per-sample AUC calls ``np.trapz``, gone in NumPy 2: it is
set to ``np.trapezoid`` for the Quantus rounds. Environment:
``ATTRIBKIT_BENCH_METRIC_IMAGES`` (default 64), ``ATTRIBKIT_BENCH_METRIC_SIZE``
(default 32), and the suite's ``ATTRIBKIT_BENCH_DEVICE`` / ``ATTRIBKIT_BENCH_ROUNDS``::

    pytest benchmarks/test_metrics_speed.py --benchmark-only

The summary prints each median relative to the floor; Quantus's over
attribkit's is the speed-up.
"""

import os

import numpy as np
import pytest

from benchmarks.conftest import bench_device
from benchmarks.shared import (
    attribkit_pixel_flipping,
    numpy_trapz,
    pixel_flipping_floor,
    pixel_flipping_setup,
    quantus_pixel_flipping,
)

N = int(os.environ.get("ATTRIBKIT_BENCH_METRIC_IMAGES", 64))
SIZE = int(os.environ.get("ATTRIBKIT_BENCH_METRIC_SIZE", 32))
ROWS = 256  # rows per model call for attribkit and for the floor (the fastest here)


@pytest.fixture(scope="module", params=["cnn", "linear"])
def setup(request):
    return (*pixel_flipping_setup(request.param, N, SIZE, bench_device()), request.param)


def attribkit_pf(model, x, y, a):
    return attribkit_pixel_flipping(model, x, y, a, ROWS)


@pytest.fixture
def trapz():
    with numpy_trapz():
        yield


@pytest.mark.parametrize("impl", ["floor", "attribkit", "quantus"])
def test_pixel_flipping(run, benchmark, setup, trapz, impl):
    pytest.importorskip("quantus")
    model, x, y, a, name = setup
    benchmark.group = f"pixel_flipping {name} {N}x{SIZE}x{SIZE}"
    if impl == "floor":
        run(lambda: pixel_flipping_floor(model, x, ROWS), "floor")
        return
    if impl == "attribkit":
        run(lambda: attribkit_pf(model, x, y, a), "attribkit")
        return
    scores = run(lambda: quantus_pixel_flipping(model, x, y, a), "peer", "quantus")
    np.testing.assert_allclose(np.asarray(scores, dtype=float),
                               attribkit_pf(model, x, y, a).double().cpu().numpy(), atol=1e-4)
