"""Each of attribkit's own gradient and CAM methods (read from the registry) against
its cost floor and against the same method in Captum, pytorch-grad-cam and TorchCAM
(the installed peers of ``attribkit.bench.peers``), in the same run.

Floors: forward + backward to the input for the gradient family; one forward
without gradients for the CAM family. ``pytest benchmarks --benchmark-only``;
``--benchmark-json`` output works with ``pytest-benchmark compare``.
"""

import os

import pytest
import torch
import torchvision

import attribkit as ak
from attribkit.bench.peers import peer_calls
from benchmarks.conftest import bench_batch, bench_device, bench_models, bench_size

LAYER = "layer4"
# options of the methods that run one forward (and backward) per channel or noisy sample
SLOW_OPTIONS = {"forward_batch_size", "n_samples"}


def built_in(family, **required):
    """The names of attribkit's own methods of ``family`` whose spec has the ``required``
    attribute values; the slow ones only with ``ATTRIBKIT_BENCH_ALL=1``."""
    every = os.environ.get("ATTRIBKIT_BENCH_ALL") == "1"
    return [s.name for s in ak.methods(family=family)
            if s.plugin == f"attribkit.families.{family}"
            and all(getattr(s, key) == value for key, value in required.items())
            and (every or not SLOW_OPTIONS & set(s.options))]


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


def forward_backward(model, x, targets):
    x = x.detach().requires_grad_()
    return torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)[0]


def forward(model, x):
    with torch.no_grad():
        return model(x)


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
