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
import torchvision

import attribkit as ak
from attribkit.bench.peers import peer_calls
from benchmarks.conftest import bench_device, bench_size

MODEL = os.environ.get("ATTRIBKIT_BENCH_LRP_MODEL", "resnet50")
BATCH = int(os.environ.get("ATTRIBKIT_BENCH_LRP_BATCH", 8))
COMPOSITES = os.environ.get("ATTRIBKIT_BENCH_LRP_COMPOSITES", "epsilon_plus_flat").split(",")


def variant(composite):
    """The bench's name of LRP with ``composite`` (its Zennit peer is filed under it)."""
    return "lrp" if composite == ak.get_method("lrp").options["composite"] else f"lrp.{composite}"


@pytest.fixture(scope="module")
def setup():
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.get_model(MODEL).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    device = bench_device()
    model = model.to(device)
    x = torch.randn(BATCH, 3, bench_size(), bench_size(), generator=gen).to(device)
    targets = torch.arange(BATCH, device=device) % 1000
    return model, x, targets


def forward_backward(model, x, targets):
    x = x.detach().requires_grad_()
    return torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)[0]


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
        calls = peer_calls(variant(composite))
        if "zennit" not in calls:
            pytest.skip("zennit is not installed (pip install attribkit[dev])")
        run(lambda: calls["zennit"](model, x, targets, None), "peer", "zennit")
