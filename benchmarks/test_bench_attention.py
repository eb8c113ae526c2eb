"""The attention family against its cost floors on timm's ``deit_tiny_patch16_224``
(random weights, fused attention as shipped), in the same run (issue 14):

* ``raw_attention`` and ``attention_rollout`` against one forward without gradients
  (target: <= 1.5x);
* ``generic_attention`` against one forward + backward to the input of the fused
  model (target: <= 1.5x).

``ATTRIBKIT_BENCH_ATTENTION_BATCH`` (default 8) and ``ATTRIBKIT_BENCH_DEVICE`` as for
the other suites; ``pytest benchmarks/test_bench_attention.py --benchmark-only``.
The summary table (``benchmarks/conftest.py``) gives the ratios (its header shows the
other suites' batch; this one uses its own). Measured on 1 CPU thread, batch 8:
raw_attention 0.93x, attention_rollout 0.93x, generic_attention 1.16x.
"""

import os

import pytest
import torch

import attribkit as ak
from benchmarks.conftest import bench_device
from benchmarks.shared import forward, forward_backward

timm = pytest.importorskip("timm")

MODEL = "deit_tiny_patch16_224"


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    device = bench_device()
    model = timm.create_model(MODEL, pretrained=False).eval().to(device)
    batch = int(os.environ.get("ATTRIBKIT_BENCH_ATTENTION_BATCH", 8))
    x = torch.randn(batch, 3, 224, 224, device=device)
    targets = torch.arange(batch, device=device) % 1000
    return model, x, targets


@pytest.mark.parametrize("impl", ["floor", "raw_attention", "attention_rollout"])
def test_forward_only(run, benchmark, setup, impl):
    model, x, targets = setup
    benchmark.group = f"{MODEL}-forward"
    if impl == "floor":
        run(lambda: forward(model, x), "floor", "forward")
    else:
        run(lambda: ak.explain(model, x, targets, method=impl), "attribkit", impl)


@pytest.mark.parametrize("impl", ["floor", "generic_attention"])
def test_forward_backward(run, benchmark, setup, impl):
    model, x, targets = setup
    benchmark.group = f"{MODEL}-forward-backward"
    if impl == "floor":
        run(lambda: forward_backward(model, x, targets), "floor", "forward+backward")
    else:
        run(lambda: ak.explain(model, x, targets, method=impl), "attribkit", impl)
