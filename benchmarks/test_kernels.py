"""Each of attribkit's own gradient and CAM methods (read from the registry) against
its cost floor and against the same method in Captum, pytorch-grad-cam and TorchCAM
(the installed peers of ``attribkit.bench.peers``), in the same run.

Floors: forward + backward to the input for the gradient family; one forward
without gradients for the CAM family. ``pytest benchmarks --benchmark-only``;
``--benchmark-json`` output works with ``pytest-benchmark compare``.
"""

import pytest
import torch
import torchvision

import attribkit as ak
from attribkit.bench.peers import peer_calls
from benchmarks.conftest import bench_batch, bench_device, bench_models, bench_size
from benchmarks.shared import built_in, forward, forward_backward

LAYER = "layer4"


def with_peers(methods):
    """``(method, impl)``: the floor, attribkit, then each installed peer of the method."""
    return [(m, impl) for m in methods for impl in ("floor", "attribkit", *peer_calls(m))]


@pytest.fixture(scope="module", params=bench_models())
def setup(request):
    torch.manual_seed(0)
    device = bench_device()
    model = torchvision.models.get_model(request.param).eval().to(device)
    x = torch.randn(bench_batch(), 3, bench_size(), bench_size(), device=device)
    targets = torch.arange(bench_batch(), device=device) % 1000
    return request.param, model, x, targets


# ---------------------------------------------------------------- the suites

@pytest.mark.parametrize("method, impl", with_peers(built_in("gradient")))
def test_gradient_family(run, benchmark, setup, method, impl):
    name, model, x, targets = setup
    benchmark.group = f"{name}-{method}"
    if impl == "floor":
        run(lambda: forward_backward(model, x, targets), "floor")
    elif impl == "attribkit":
        run(lambda: ak.explain(model, x, targets, method=method), "attribkit")
    else:
        peer = peer_calls(method)[impl]
        run(lambda: peer(model, x, targets, None), "peer", impl)


# layer maps only: Guided Grad-CAM's pixel map needs the gradient-family floor
@pytest.mark.parametrize("method, impl", with_peers(built_in("cam", output="layer")))
def test_cam_family(run, benchmark, setup, method, impl):
    name, model, x, targets = setup
    benchmark.group = f"{name}-{method}"
    layer = getattr(model, LAYER)
    if impl == "floor":
        run(lambda: forward(model, x), "floor")
    elif impl == "attribkit":
        run(lambda: ak.explain(model, x, targets, method=method, layer=layer), "attribkit")
    else:
        peer = peer_calls(method)[impl]
        run(lambda: peer(model, x, targets, layer), "peer", impl)
