"""attribkit's LRP against Zennit (its ``Gradient`` attributor with the same composite
and canonizers, from ``attribkit.bench.peers``) and against one forward + backward to
the input, in the same run.

Defaults: torchvision ``resnet50`` (random weights, BatchNorm statistics made
non-trivial), batch 8, the ``epsilon_plus_flat`` composite, on the bench device.
Environment: ``ATTRIBKIT_BENCH_LRP_MODEL``, ``ATTRIBKIT_BENCH_LRP_BATCH``,
``ATTRIBKIT_BENCH_LRP_COMPOSITES`` (comma-separated), and the suite's
``ATTRIBKIT_BENCH_DEVICE`` / ``ATTRIBKIT_BENCH_SIZE`` / ``ATTRIBKIT_BENCH_ROUNDS``::

    pytest benchmarks/test_bench_lrp.py --benchmark-only
"""

import os

import pytest
import torch

import attribkit as ak
from attribkit.bench.peers import peer_calls
from benchmarks.conftest import bench_device, bench_size
from benchmarks.shared import forward_backward, lrp_model, lrp_variant

MODEL = os.environ.get("ATTRIBKIT_BENCH_LRP_MODEL", "resnet50")
BATCH = int(os.environ.get("ATTRIBKIT_BENCH_LRP_BATCH", 8))
COMPOSITES = os.environ.get("ATTRIBKIT_BENCH_LRP_COMPOSITES", "epsilon_plus_flat").split(",")


@pytest.fixture(scope="module")
def setup():
    gen = torch.Generator().manual_seed(1)
    device = bench_device()
    model = lrp_model(MODEL, device)
    x = torch.randn(BATCH, 3, bench_size(), bench_size(), generator=gen).to(device)
    targets = torch.arange(BATCH, device=device) % 1000
    return model, x, targets


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("impl", ["floor", "attribkit", "zennit"])
def test_lrp(run, benchmark, setup, composite, impl):
    model, x, targets = setup
    benchmark.group = f"{MODEL}-b{BATCH}-lrp-{composite}"
    if impl == "floor":
        run(lambda: forward_backward(model, x, targets), "floor", "forward+backward")
    elif impl == "attribkit":
        run(lambda: ak.explain(model, x, targets, method="lrp", composite=composite), "attribkit")
    else:
        calls = peer_calls(lrp_variant(composite))
        if "zennit" not in calls:
            pytest.skip("zennit is not installed (pip install attribkit[dev])")
        run(lambda: calls["zennit"](model, x, targets, None), "peer", "zennit")
