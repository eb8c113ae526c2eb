"""Each attribkit kernel against its cost floor and against the same method in
Captum, pytorch-grad-cam and TorchCAM (when installed), in the same run.

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

GRADIENT_METHODS = ["saliency", "guided_backprop", "deconvnet", "input_x_gradient"]
CAM_METHODS = ["cam", "gradcam", "gradcam_pp", "hirescam", "xgradcam", "layercam", "eigencam",
               "scorecam", "ablationcam"]
SLOW = {"scorecam", "ablationcam"}
LAYER = "layer4"


def registered(methods):
    chosen = [m for m in methods if m in {s.name for s in ak.methods()}]
    if os.environ.get("ATTRIBKIT_BENCH_ALL") != "1":
        chosen = [m for m in chosen if m not in SLOW]
    return chosen


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

@pytest.mark.parametrize("impl", ["floor", "attribkit", "captum"])
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_family(run, benchmark, setup, method, impl):
    name, model, x, targets = setup
    benchmark.group = f"{name}-{method}"
    if impl == "floor":
        run(lambda: forward_backward(model, x, targets), "floor")
    elif impl == "attribkit":
        run(lambda: ak.explain(model, x, targets, method=method), "attribkit")
    else:
        peer = peer_calls(method).get(impl)
        if peer is None:
            pytest.skip(f"{impl} not installed")
        run(lambda: peer(model, x, targets, None), "peer", impl)


@pytest.mark.parametrize("impl", ["floor", "attribkit", "captum", "pytorch-grad-cam", "torchcam"])
@pytest.mark.parametrize("method", registered(CAM_METHODS))
def test_cam_family(run, benchmark, setup, method, impl):
    name, model, x, targets = setup
    benchmark.group = f"{name}-{method}"
    layer = getattr(model, LAYER)
    if impl == "floor":
        run(lambda: forward(model, x), "floor")
    elif impl == "attribkit":
        run(lambda: ak.explain(model, x, targets, method=method, layer=layer), "attribkit")
    else:
        peer = peer_calls(method).get(impl)
        if peer is None:
            pytest.skip(f"{impl} is not installed or has no {method}")
        run(lambda: peer(model, x, targets, layer), "peer", impl)
