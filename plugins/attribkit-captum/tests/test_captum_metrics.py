"""Captum's infidelity and sensitivity_max on attribkit results equal direct Captum calls."""

import random

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from captum.metrics import infidelity as captum_infidelity
from captum.metrics import sensitivity_max as captum_sensitivity_max

import attribkit as ak
from attribkit.testing import assert_model_untouched
from attribkit_captum.metrics import attribution_like_inputs, infidelity, sensitivity_max
from attribkit_captum.table import METRICS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")


def seed_all(seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_infidelity_equals_captum(model, images, targets):
    r = ak.explain(model, images, targets, method="captum.input_x_gradient")
    with assert_model_untouched(model):
        ours = infidelity(model, images, r, n_perturb_samples=4)
    flat = images.flatten(1)
    scale = (0.05 * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)

    def perturb(x):
        noise = torch.randn_like(x) * scale.repeat_interleave(len(x) // 3, dim=0)
        return noise, x - noise

    seed_all()
    with torch.no_grad():
        ref = captum_infidelity(model, perturb, images, r.values, target=targets,
                                n_perturb_samples=4)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)


def test_infidelity_accepts_layer_maps_and_callable_targets(model, images):
    cam = ak.explain(model, images, lambda s: s[:, 0], method="captum.layer_gradcam")
    assert attribution_like_inputs(cam, images).shape == images.shape
    values = infidelity(model, images, cam, n_perturb_samples=2)
    assert values.shape == (3,) and bool(torch.isfinite(values).all())


def test_sensitivity_max_equals_captum(model, images, targets):
    r = ak.explain(model, images, targets, method="captum.saliency")
    with assert_model_untouched(model):
        ours = sensitivity_max(model, images, r, n_perturb_samples=3)
    seed_all()
    ref = captum_sensitivity_max(Saliency(model).attribute, images, target=targets,
                                 n_perturb_samples=3)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-9)


def test_sensitivity_max_reuses_layer_and_options(model, images):
    r = ak.explain(model, images, method="captum.layer_gradcam", layer="features.3",
                   relu_attributions=True)
    values = sensitivity_max(model, images, r, n_perturb_samples=2)
    assert values.shape == (3,) and bool((values >= 0).all())


def test_metric_descriptions_name_importable_functions():
    import importlib

    for name, meta in METRICS.items():
        module, _, attr = meta["factory"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_metrics_are_registered_and_run_in_the_benchmark(model, images):
    from attribkit.evaluation.base import MetricInput
    from attribkit.evaluation.functional import pixel_relevance

    assert {"captum.infidelity", "captum.sensitivity_max"} <= {m.name for m in ak.metrics()}
    assert ak.get_metric("captum.infidelity").plugin == "captum"
    targets = torch.tensor([0, 1, 2])

    def explain(m, x, t):
        return pixel_relevance(ak.explain(m, x, t, method="saliency").values, x.shape[-2:])

    data = MetricInput(predict=model, inputs=images, relevance=explain(model, images, targets),
                       targets=targets, model=model, explain=explain)
    for name in ("captum.infidelity", "captum.sensitivity_max"):
        spec = ak.get_metric(name)
        result = spec.load()(data, **spec.bind_options({"n_perturb_samples": 2}))
        assert result.scores.shape == (3,) and bool(torch.isfinite(result.scores).all()), name
