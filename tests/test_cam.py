"""The CAM engine: one channel weighting per method over a shared engine. Only the
part after the layer is differentiated; callable targets (a segmentation model);
the layer (auto-picked, called twice, errors); the registry's description of the
family.

The other CAM test files: ``test_cam_peers`` (equality with pytorch-grad-cam and
Captum), ``test_cam_ablation`` (Ablation-CAM's expanded path), ``test_cam_zhou``
(CAM by hand), ``test_cam_guarantee`` (the model guarantee, batching, autograd modes).
"""

import subprocess
import sys

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import InvalidOptionError, LayerError
from tests.cam_support import (CAM_METHODS, GRADIENT_CAMS, PER_CHANNEL, Segmenter, Twice,
                                Unrolled, region_score)



@pytest.mark.parametrize("method", GRADIENT_CAMS)
def test_gradient_cams_record_no_graph_before_the_layer(method, tiny_cnn, images):
    """Only the part after the layer is differentiated: the input is never reached."""
    seen = {}

    def before(module, args, output):
        seen["before"] = torch.is_grad_enabled() or output.requires_grad

    def after(module, args, output):
        seen["after"] = output.requires_grad

    hooks = [tiny_cnn.features[0].register_forward_hook(before),
             tiny_cnn.fc.register_forward_hook(after)]
    try:
        ak.explain(tiny_cnn, images, method=method, layer="features.2")
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"before": False, "after": True}


# -------------------------------------------------------- targets and layers


@pytest.mark.parametrize("method", GRADIENT_CAMS + PER_CHANNEL)
def test_callable_target_on_a_segmentation_model(method, images):
    torch.manual_seed(7)
    model = Segmenter().eval()
    r = ak.explain(model, images, region_score, method=method, layer="body")
    assert r.target is None and r.values.shape == (4, 1, 12, 12)
    acts = model.body(images)
    if method in GRADIENT_CAMS:  # reference: the full graph, differentiated at the layer
        grads, = torch.autograd.grad(region_score(model.head(acts)).sum(), acts)
        from attribkit.torch.cam import GRADIENT_WEIGHTINGS
        weights = GRADIENT_WEIGHTINGS[method](acts.detach(), grads)
        expected = (weights * acts.detach()).sum(1, keepdim=True).clamp(min=0)
        torch.testing.assert_close(r.values, expected, rtol=1e-5, atol=1e-6)
    assert bool((r.values >= 0).all()) and bool((r.values > 0).any())


def test_callable_target_equals_the_class_target(tiny_cnn, images):
    for method in GRADIENT_CAMS + PER_CHANNEL:
        by_class = ak.explain(tiny_cnn, images, 2, method=method)
        by_callable = ak.explain(tiny_cnn, images, lambda s: s[:, 2], method=method)
        torch.testing.assert_close(by_callable.values, by_class.values)


def test_auto_layer_on_resnet18_is_layer4(resnet18):
    r = ak.explain(resnet18, torch.randn(2, 3, 64, 64), method="gradcam")
    assert r.layer == "layer4" and r.values.shape == (2, 1, 2, 2)
    assert r.upsampled().shape == (2, 1, 64, 64)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_a_layer_called_twice_is_explained_at_its_last_call(method, images):
    torch.manual_seed(8)
    twice = Twice().eval()
    ours = ak.explain(twice, images, [0, 1, 2, 3], method=method, layer="block")
    reference = ak.explain(Unrolled(twice), images, [0, 1, 2, 3], method=method, layer="second")
    torch.testing.assert_close(ours.values, reference.values)


class Detour(nn.Module):
    """``unused`` is a submodule that the forward never calls."""

    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.used(x).mean((2, 3))


def test_layer_errors(tiny_cnn, images):
    with pytest.raises(LayerError, match=r"\(B, C, h, w\) tensor; layer Linear returned \(4, 5\)"):
        ak.explain(tiny_cnn, images, method="gradcam", layer="fc")
    model = Detour()
    for method in ("gradcam", "scorecam"):
        with pytest.raises(LayerError, match="was not called"):
            ak.explain(model, images, method=method, layer="unused")
    with pytest.raises(LayerError, match="does not depend on the output"):
        ak.explain(tiny_cnn, images, lambda s: torch.ones(len(s), requires_grad=True),
                   method="gradcam", layer="features")
    with pytest.raises(LayerError, match="reaches the target score"):  # the automatic layer
        ak.explain(tiny_cnn, images, lambda s: torch.ones(len(s), requires_grad=True),
                   method="gradcam")
    with pytest.raises(InvalidOptionError, match="interpolate_mode"):
        ak.explain(tiny_cnn, images, method="guided_gradcam", interpolate_mode="cubic")


# ------------------------------------------------------------------ registry


def test_registry_describes_every_cam_method():
    expected_aliases = {"gradcam_pp": {"gradcampp", "grad_cam_plus_plus"},
                        "gradcam": {"grad_cam"}, "scorecam": {"score_cam"}}
    for name in CAM_METHODS:
        spec = ak.get_method(name)
        assert spec.family == "cam" and "layer" in spec.needs and spec.plugin == "attribkit.families.cam"
        module = "ablation" if name == "ablationcam" else "cam"
        assert spec.reference and spec.factory == f"attribkit.torch.{module}:{name}"
        assert spec.output == ("pixel" if name == "guided_gradcam" else "layer")
        assert spec.sign == ("signed" if name == "guided_gradcam" else "non-negative")
        assert expected_aliases.get(name, set()) <= set(spec.aliases)
        for alias in spec.aliases:
            assert ak.get_method(alias) is spec
        assert callable(spec.load())
    assert "autograd" not in ak.get_method("scorecam").needs
    assert ak.get_method("Grad-CAM") is ak.get_method("gradcam")


def test_the_family_module_does_not_import_torch():
    code = ("import sys, attribkit.families.cam as f; names = [s.name for s in f.SPECS]; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(CAM_METHODS))
