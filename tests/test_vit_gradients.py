"""The gradient family on transformers: it needs nothing of the architecture. Guided
backpropagation and deconvnet change only ReLU backward passes, so on a GELU
transformer without ReLU they are the plain gradient (documented in
docs/transformers.md)."""

import pytest
import torch

import attribkit as ak
from attribkit.testing import assert_model_untouched
from tests.test_vit_models import torchvision_vit, timm_vit, vit_images

TARGETS = [0, 3]


@pytest.mark.parametrize("build", [timm_vit, torchvision_vit], ids=["timm", "torchvision"])
def test_gradient_methods_run_and_guided_is_the_plain_gradient_without_relu(build):
    model, x = build(), vit_images(2)
    x64, model64 = x.double(), build().double()
    scores = model64(x64.clone().requires_grad_())
    inputs = x64.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model64(inputs)[torch.arange(2), TARGETS].sum(), inputs)
    assert scores.shape == (2, 5)
    torch.testing.assert_close(ak.explain(model64, x64, TARGETS, method="saliency", abs=False).values, grad)
    for method in ("guided_backprop", "deconvnet"):
        torch.testing.assert_close(ak.explain(model64, x64, TARGETS, method=method).values, grad)
    with assert_model_untouched(model):
        for method in ("saliency", "input_x_gradient"):
            assert ak.explain(model, x, TARGETS, method=method).values.shape == x.shape
        assert ak.explain(model, x, TARGETS, method="smoothgrad", n_samples=2, seed=0).values.shape == x.shape


@pytest.mark.parametrize("build", [timm_vit, torchvision_vit], ids=["timm", "torchvision"])
def test_captum_integrated_gradients_through_the_plugin(build):
    if "captum.integrated_gradients" not in {s.name for s in ak.methods()}:
        pytest.skip("the attribkit-captum plugin is not installed")
    model, x = build(), vit_images(2)
    with assert_model_untouched(model):
        r = ak.explain(model, x, TARGETS, method="captum.integrated_gradients", n_steps=4)
    assert r.values.shape == x.shape and torch.isfinite(r.values).all() and r.values.abs().sum() > 0
