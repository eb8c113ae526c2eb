"""Every registered Captum method, run through ak.explain, equals a direct Captum call
with the same arguments (the adapter changes nothing), on 3 images with 3 targets.

The direct calls below spell out the adapter's documented defaults by hand:
zero baselines (Captum's default), SHAP baseline distributions of zeros and a
blurred copy per image, an 8x8 grid feature mask (2x2 for exact Shapley
values), perturbations_per_eval = 32 // rows per call, a 1-pixel occlusion
window for 8x8 images, the auto-picked layer ``features``, and seed 0 for the
stochastic methods (per image for the per-image ones).
"""

import random

import captum.attr as A
import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit_captum.defaults import gaussian_blur
from attribkit_captum.table import SUPPORTED

MASK = torch.arange(64).view(1, 1, 8, 8)                                     # grid=8 on 8x8
QUADRANTS = (torch.arange(8)[:, None] // 4 * 2 + torch.arange(8)[None, :] // 4).view(1, 1, 8, 8)
PPE = 32 // 3            # perturbations_per_eval default for a chunk of 3 images
PPE_ONE = 32             # ... for per-image calls

# the direct Captum calls warn about what they do; the adapter silences those
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")


def seed_all(seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def shap_baselines(xi):
    return torch.cat([torch.zeros_like(xi), gaussian_blur(xi)])


def per_image(x, t, fn):
    """Captum once per image, re-seeded each time (what the adapter does for per-image entries)."""
    out = []
    for i in range(len(x)):
        seed_all()
        out.append(fn(x[i:i + 1], t[i:i + 1]))
    return torch.cat(out)


def seeded(fn):
    seed_all()
    return fn()


REFERENCE = {
    "IntegratedGradients": lambda m, x, t: A.IntegratedGradients(m).attribute(x, target=t),
    "Saliency": lambda m, x, t: A.Saliency(m).attribute(x, target=t),
    "InputXGradient": lambda m, x, t: A.InputXGradient(m).attribute(x, target=t),
    "DeepLift": lambda m, x, t: A.DeepLift(m).attribute(x, target=t),
    "DeepLiftShap": lambda m, x, t: per_image(x, t, lambda xi, ti: A.DeepLiftShap(m).attribute(
        xi, baselines=shap_baselines(xi), target=ti)),
    "GradientShap": lambda m, x, t: per_image(x, t, lambda xi, ti: A.GradientShap(m).attribute(
        xi, baselines=shap_baselines(xi), n_samples=5, stdevs=0.0, target=ti)),
    "GuidedBackprop": lambda m, x, t: A.GuidedBackprop(m).attribute(x, target=t),
    "Deconvolution": lambda m, x, t: A.Deconvolution(m).attribute(x, target=t),
    "GuidedGradCam": lambda m, x, t: A.GuidedGradCam(m, m.features).attribute(x, target=t),
    "LRP": lambda m, x, t: A.LRP(m).attribute(x, target=t),
    "FeatureAblation": lambda m, x, t: A.FeatureAblation(m).attribute(
        x, target=t, feature_mask=MASK, perturbations_per_eval=PPE),
    "FeaturePermutation": lambda m, x, t: seeded(lambda: A.FeaturePermutation(m).attribute(
        x, target=t, feature_mask=MASK, perturbations_per_eval=PPE)),
    "Occlusion": lambda m, x, t: A.Occlusion(m).attribute(
        x, sliding_window_shapes=(3, 1, 1), strides=(3, 1, 1), target=t,
        perturbations_per_eval=PPE),
    "ShapleyValueSampling": lambda m, x, t: seeded(lambda: A.ShapleyValueSampling(m).attribute(
        x, target=t, feature_mask=MASK, n_samples=25, perturbations_per_eval=PPE)),
    "ShapleyValues": lambda m, x, t: A.ShapleyValues(m).attribute(
        x, target=t, feature_mask=QUADRANTS, perturbations_per_eval=PPE),
    "KernelShap": lambda m, x, t: per_image(x, t, lambda xi, ti: A.KernelShap(m).attribute(
        xi, target=ti, feature_mask=MASK, n_samples=25, perturbations_per_eval=PPE_ONE)),
    "Lime": lambda m, x, t: per_image(x, t, lambda xi, ti: A.Lime(m).attribute(
        xi, target=ti, feature_mask=MASK, n_samples=25, perturbations_per_eval=PPE_ONE)),
    "LayerGradCam": lambda m, x, t: A.LayerGradCam(m, m.features).attribute(x, target=t),
    "LayerConductance": lambda m, x, t: A.LayerConductance(m, m.features).attribute(x, target=t),
    "LayerIntegratedGradients": lambda m, x, t: A.LayerIntegratedGradients(
        m, m.features).attribute(x, target=t),
    "LayerGradientXActivation": lambda m, x, t: A.LayerGradientXActivation(
        m, m.features).attribute(x, target=t),
    "LayerDeepLift": lambda m, x, t: A.LayerDeepLift(m, m.features).attribute(x, target=t),
    "LayerDeepLiftShap": lambda m, x, t: per_image(x, t, lambda xi, ti: A.LayerDeepLiftShap(
        m, m.features).attribute(xi, baselines=shap_baselines(xi), target=ti)),
    "LayerGradientShap": lambda m, x, t: per_image(x, t, lambda xi, ti: A.LayerGradientShap(
        m, m.features).attribute(xi, baselines=shap_baselines(xi), n_samples=5, target=ti)),
    "LayerActivation": lambda m, x, t: A.LayerActivation(m, m.features).attribute(x),
    "InternalInfluence": lambda m, x, t: A.InternalInfluence(m, m.features).attribute(
        x, target=t),
    # LayerLRP needs a leaf with a rule: the Sequential's last ReLU passes relevance
    # through unchanged, so the adapter reads it at the conv before it.
    "LayerLRP": lambda m, x, t: A.LayerLRP(m, m.features[3]).attribute(x, target=t),
    # Captum's own valid form (perturbations_per_eval=1 with per-image targets);
    # the adapter selects the target in the forward to allow larger ones.
    "LayerFeatureAblation": lambda m, x, t: A.LayerFeatureAblation(m, m.features).attribute(
        x, target=t, layer_mask=MASK),
    # Captum 0.9 applies a class target twice here; its working form selects in the forward.
    "LayerFeaturePermutation": lambda m, x, t: seeded(lambda: A.LayerFeaturePermutation(
        lambda z: m(z).gather(1, t.repeat(len(z) // len(t))[:, None]).squeeze(1),
        m.features).attribute(x, layer_mask=MASK, perturbations_per_eval=PPE)),
}


def test_the_reference_covers_every_registered_class():
    assert set(REFERENCE) == {e.cls for e in SUPPORTED}


@pytest.mark.parametrize("entry", SUPPORTED, ids=lambda e: e.name)
def test_adapter_equals_direct_captum_call(entry, model, images, targets):
    result = ak.explain(model, images, targets, method=entry.method_name)
    expected = REFERENCE[entry.cls](model, images.clone(), targets)
    assert result.values.shape == expected.shape
    torch.testing.assert_close(result.values, expected.detach(), rtol=0, atol=0)
    assert torch.equal(result.target, targets)
    assert result.method == entry.method_name
    assert result.layer == ("features" if entry.layer else None)
    assert result.meta["captum"]["class"] == entry.cls
    if entry.output == "pixel":
        assert result.values.shape == images.shape
    else:
        assert result.upsampled().shape[-2:] == images.shape[-2:]
