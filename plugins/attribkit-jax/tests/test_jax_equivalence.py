"""Every framework method on the Flax twins (linen, NNX, f(params, x)) equals ak.explain on
the PyTorch model they were copied from; integrated gradients also equals Captum's."""

import numpy as np
import pytest
import torch

import attribkit as ak

TOL = {"rtol": 1e-5, "atol": 1e-5}
PIXEL = {"saliency": {}, "input_x_gradient": {}, "smoothgrad": {"n_samples": 4, "stdev": 0.2, "seed": 3},
         "integrated_gradients": {"n_steps": 8}}
LAYERED = ("gradcam", "gradcam_pp", "layercam", "hirescam", "xgradcam", "eigencam")
KINDS = ("linen", "nnx", "function")


def explain_jax(kind, request, x, method, **options):
    model = request.getfixturevalue({"linen": "linen", "nnx": "nnx_cnn", "function": "function"}[kind])
    if kind == "function":
        options.update(backend="jax", params=request.getfixturevalue("variables"))
    return ak.explain(model, x, method=method, **options)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", list(PIXEL))
def test_pixel_methods_equal_torch(request, kind, method, torch_model, images, nhwc):
    target = [2, 0, 1]
    ours = explain_jax(kind, request, nhwc, method, target=target, **PIXEL[method])
    theirs = ak.explain(torch_model, images, target, method=method, **PIXEL[method])
    assert ours.values.shape == (3, 3, 8, 8) and ours.meta["framework"] == "jax"
    np.testing.assert_allclose(ours.values, theirs.values.numpy(), **TOL)
    assert ours.target.tolist() == target


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", LAYERED)
def test_layer_methods_equal_torch(request, kind, method, torch_model, images, nhwc):
    ours = explain_jax(kind, request, nhwc, method, layer="conv2")
    theirs = ak.explain(torch_model, images, method=method, layer="features.3")
    assert ours.values.shape == (3, 1, 8, 8) and ours.layer == "conv2"
    np.testing.assert_allclose(ours.values, theirs.values.numpy(), **TOL)
    assert ours.target.tolist() == theirs.target.tolist()  # the top classes, from the same pass


def test_top_class_in_the_same_pass(linen, torch_model, images, nhwc):
    ours = ak.explain(linen, nhwc, method="saliency")
    theirs = ak.explain(torch_model, images, method="saliency")
    assert ours.target.tolist() == theirs.target.tolist()
    np.testing.assert_allclose(ours.values, theirs.values.numpy(), **TOL)


@pytest.fixture(scope="module")
def captum_ig():
    return pytest.importorskip("captum.attr").IntegratedGradients


@pytest.mark.parametrize("integration", ["gausslegendre", "riemann_middle"])
def test_integrated_gradients_equals_captum(linen, torch_model, images, nhwc, integration, captum_ig):
    baseline = 0.25
    ours = ak.explain(linen, nhwc, [1, 2, 3], method="integrated_gradients", n_steps=12, baseline=baseline,
                      integration_method=integration)
    captum = captum_ig(torch_model).attribute(
        images, baselines=baseline, target=torch.tensor([1, 2, 3]), n_steps=12, method=integration)
    np.testing.assert_allclose(ours.values, captum.detach().numpy(), **TOL)


def test_automatic_layer_is_the_last_spatial_conv(linen, nnx_cnn, torch_model, images, nhwc):
    theirs = ak.explain(torch_model, images, method="gradcam", layer="features.3")
    for model in (linen, nnx_cnn):
        ours = ak.explain(model, nhwc, method="gradcam")
        assert ours.layer == "conv2"
        np.testing.assert_allclose(ours.values, theirs.values.numpy(), **TOL)


@pytest.mark.parametrize("kind", ("linen", "nnx"))
def test_occlusion_runs_unchanged(request, kind, torch_model, images, nhwc):
    options = {"window": 4, "stride": 4}
    ours = explain_jax(kind, request, nhwc, "occlusion", target=1, **options)
    theirs = ak.explain(torch_model, images, 1, method="occlusion", **options)
    np.testing.assert_allclose(ours.values, np.asarray(theirs.values), **TOL)


def test_evaluate_on_the_flax_model(linen, torch_model, images, nhwc):
    result = ak.explain(linen, nhwc, method="saliency")
    metrics = ["deletion_auc", "insertion_auc"]
    ours = ak.evaluate(linen, nhwc, result, metrics=metrics)
    theirs = ak.evaluate(torch_model, images, result, metrics=metrics)
    for name in metrics:
        np.testing.assert_allclose(ours[name].scores.numpy(), theirs[name].scores.numpy(), **TOL)
