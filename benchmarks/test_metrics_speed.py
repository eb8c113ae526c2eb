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
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import attribkit as ak
from benchmarks.conftest import bench_device

N = int(os.environ.get("ATTRIBKIT_BENCH_METRIC_IMAGES", 64))
SIZE = int(os.environ.get("ATTRIBKIT_BENCH_METRIC_SIZE", 32))
ROWS = 256  # rows per model call for attribkit and for the floor (the fastest here)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(SIZE * SIZE, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module", params=["cnn", "linear"])
def setup(request):
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = (Tiny() if request.param == "cnn" else Linear()).eval().to(bench_device())
    x = torch.rand(N, 1, SIZE, SIZE, generator=gen).to(bench_device())
    a = torch.rand(N, SIZE, SIZE, generator=gen).to(bench_device())
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, a, request.param


def attribkit_pf(model, x, y, a):
    options = {"pixel_flipping": {"features_in_step": 1}}
    return ak.evaluate(model, x, a, y, metrics=["pixel_flipping"], options=options,
                       batch_size=ROWS)["pixel_flipping"].scores


def quantus_pf(model, x, y, a):
    import quantus

    metric = quantus.PixelFlipping(features_in_step=1, return_auc_per_sample=True, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                      a_batch=a[:, None].cpu().numpy(), channel_first=True, device=str(x.device),
                      softmax=True, batch_size=N)


def floor(model, x):
    """All ``N * H * W`` forwards, on an already perturbed batch (no perturbation work)."""
    total = N * SIZE * SIZE
    with torch.no_grad():
        for start in range(0, total, ROWS):
            model(x[torch.arange(start, min(start + ROWS, total), device=x.device) % N])


@pytest.fixture
def trapz(monkeypatch):
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


@pytest.mark.parametrize("impl", ["floor", "attribkit", "quantus"])
def test_pixel_flipping(run, benchmark, setup, trapz, impl):
    pytest.importorskip("quantus")
    model, x, y, a, name = setup
    benchmark.group = f"pixel_flipping {name} {N}x{SIZE}x{SIZE}"
    if impl == "floor":
        run(lambda: floor(model, x), "floor")
        return
    if impl == "attribkit":
        run(lambda: attribkit_pf(model, x, y, a), "attribkit")
        return
    scores = run(lambda: quantus_pf(model, x, y, a), "peer", "quantus")
    np.testing.assert_allclose(np.asarray(scores, dtype=float),
                               attribkit_pf(model, x, y, a).double().cpu().numpy(), atol=1e-4)
