"""The same method in peer libraries, for side-by-side timing (when installed).

Each factory returns ``call(model, inputs, targets, layer)`` or ``None`` when
the peer lacks the method or is not installed. ``layer`` is a module.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch

PeerCall = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.nn.Module], object]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def captum(method: str) -> PeerCall | None:
    """Captum's class for a gradient-family method or Grad-CAM."""
    if not _installed("captum"):
        return None
    from captum import attr

    pixel = {"saliency": attr.Saliency, "guided_backprop": attr.GuidedBackprop,
             "deconvnet": attr.Deconvolution, "input_x_gradient": attr.InputXGradient}
    if method in pixel:
        cls = pixel[method]
        return lambda model, x, t, layer: cls(model).attribute(x, target=t.tolist())
    if method == "gradcam":
        return lambda model, x, t, layer: attr.LayerGradCam(model, layer).attribute(
            x, target=t.tolist(), relu_attributions=True)
    if method == "guided_gradcam":
        return lambda model, x, t, layer: attr.GuidedGradCam(model, layer).attribute(x, target=t.tolist())
    return None


def pytorch_grad_cam(method: str) -> PeerCall | None:
    """pytorch-grad-cam's class for a CAM method."""
    if not _installed("pytorch_grad_cam"):
        return None
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"gradcam": pgc.GradCAM, "gradcam_pp": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
           "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM,
           "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM}.get(method)
    if cls is None:
        return None

    def call(model, x, targets, layer):
        with cls(model=model, target_layers=[layer]) as cam:
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])

    return call


def torchcam(method: str) -> PeerCall | None:
    """TorchCAM's class for a CAM method."""
    if not _installed("torchcam"):
        return None
    import torchcam.methods as tcm

    cls = {"cam": tcm.CAM, "gradcam": tcm.GradCAM, "gradcam_pp": tcm.GradCAMpp,
           "xgradcam": tcm.XGradCAM, "layercam": tcm.LayerCAM, "scorecam": tcm.ScoreCAM}.get(method)
    if cls is None:
        return None

    def call(model, x, targets, layer):
        extractor = cls(model, target_layer=layer)
        try:
            if method in ("cam", "scorecam"):
                with torch.no_grad():
                    return extractor(targets.tolist(), model(x))
            return extractor(targets.tolist(), model(x))
        finally:
            extractor.remove_hooks()

    return call


PEERS = {"captum": captum, "pytorch-grad-cam": pytorch_grad_cam, "torchcam": torchcam}


def peer_calls(method: str) -> dict[str, PeerCall]:
    """Every installed peer implementation of ``method``."""
    calls = {name: factory(method) for name, factory in PEERS.items()}
    return {name: call for name, call in calls.items() if call is not None}
