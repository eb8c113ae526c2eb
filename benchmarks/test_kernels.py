"""Each attribkit kernel against its cost floor and against the same method in
Captum, pytorch-grad-cam and TorchCAM (when installed), in the same run.

Floors: forward + backward to the input for the gradient family; one forward
without gradients for the CAM family. ``pytest benchmarks --benchmark-only``;
``--benchmark-json`` output works with ``pytest-benchmark compare``.
"""

import importlib.util
import os

import pytest
import torch
import torchvision

import attribkit as ak
from benchmarks.conftest import bench_batch, bench_device, bench_models, bench_size

GRADIENT_METHODS = ["saliency", "guided_backprop", "deconvnet", "input_x_gradient"]
CAM_METHODS = ["cam", "gradcam", "gradcam_pp", "hirescam", "xgradcam", "layercam", "eigencam",
               "scorecam", "ablationcam"]
SLOW = {"scorecam", "ablationcam"}
LAYER = "layer4"


def available(name):
    return importlib.util.find_spec(name) is not None


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


# ---------------------------------------------------------------- gradient family

def captum_gradient(method):
    from captum import attr

    cls = {"saliency": attr.Saliency, "guided_backprop": attr.GuidedBackprop,
           "deconvnet": attr.Deconvolution, "input_x_gradient": attr.InputXGradient}[method]
    return lambda model, x, t: cls(model).attribute(x, target=t)


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
        if not available("captum"):
            pytest.skip("captum not installed")
        fn = captum_gradient(method)
        run(lambda: fn(model, x, targets.tolist()), "peer")


# ---------------------------------------------------------------- CAM family

def grad_cam_peer(method, model):
    import pytorch_grad_cam as pgc

    cls = {"gradcam": pgc.GradCAM, "gradcam_pp": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
           "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM,
           "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM}.get(method)
    if cls is None:
        return None
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def call(x, targets):
        with cls(model=model, target_layers=[getattr(model, LAYER)[-1]]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])

    return call


def torchcam_peer(method, model):
    import torchcam.methods as tcm

    cls = {"cam": tcm.CAM, "gradcam": tcm.GradCAM, "gradcam_pp": tcm.GradCAMpp,
           "xgradcam": tcm.XGradCAM, "layercam": tcm.LayerCAM, "scorecam": tcm.ScoreCAM}.get(method)
    if cls is None:
        return None

    def call(x, targets):
        extractor = cls(model, target_layer=LAYER)
        try:
            if method in ("cam", "scorecam"):
                with torch.no_grad():
                    scores = model(x)
                return extractor(targets.tolist(), scores)
            return extractor(targets.tolist(), model(x))
        finally:
            extractor.remove_hooks()

    return call


@pytest.mark.parametrize("impl", ["floor", "attribkit", "pytorch-grad-cam", "torchcam"])
@pytest.mark.parametrize("method", registered(CAM_METHODS))
def test_cam_family(run, benchmark, setup, method, impl):
    name, model, x, targets = setup
    benchmark.group = f"{name}-{method}"
    if impl == "floor":
        run(lambda: forward(model, x), "floor")
        return
    if impl == "attribkit":
        run(lambda: ak.explain(model, x, targets, method=method, layer=LAYER), "attribkit")
        return
    module = {"pytorch-grad-cam": "pytorch_grad_cam", "torchcam": "torchcam"}[impl]
    if not available(module):
        pytest.skip(f"{impl} not installed")
    peer = (grad_cam_peer if impl == "pytorch-grad-cam" else torchcam_peer)(method, model)
    if peer is None:
        pytest.skip(f"{impl} has no {method}")
    run(lambda: peer(x, targets), "peer")
