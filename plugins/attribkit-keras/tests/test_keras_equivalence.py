"""Every method with a framework kernel on the Keras twin equals ``ak.explain`` on the PyTorch model."""

import keras
import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

import attribkit as ak
from keras_twins import LAYERS, keras_kwargs, nhwc, weights

GRADIENTS = {
    "saliency": {},
    "input_x_gradient": {},
    "integrated_gradients": {"n_steps": 8, "baseline": 0.1, "batch_size": 2},  # chunks of 2 and 1
    "smoothgrad": {"n_samples": 4, "stdev": 0.2, "seed": 3},
}
CAMS = ["gradcam", "gradcam_pp", "layercam", "hirescam", "xgradcam", "eigencam"]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def both(nets, images, method, target=None, **options):
    net, model = nets
    mine = ak.explain(model, nhwc(images), method=method, target=target, **keras_kwargs(model), **options)
    theirs = ak.explain(net, images, method=method, target=target,
                        **{k: LAYERS.get(v, v) for k, v in options.items()})
    return mine, theirs


@pytest.mark.parametrize("target", [None, [2, 0, 3]], ids=["top", "given"])
@pytest.mark.parametrize("method", list(GRADIENTS))
def test_gradient_methods_equal_the_torch_twin(nets, images, method, target):
    mine, theirs = both(nets, images, method, target, **GRADIENTS[method])
    assert mine.values.shape == tuple(theirs.values.shape) == (3, 3, 8, 8)
    np.testing.assert_allclose(mine.values, theirs.values.numpy(), **TOL)
    np.testing.assert_array_equal(mine.target, np.asarray(theirs.target))
    assert mine.meta["framework"] == "keras" and mine.meta["input_layout"] == "NHWC"


@pytest.mark.parametrize("layer", ["relu2", "conv2", "relu1"])
@pytest.mark.parametrize("method", CAMS)
def test_cams_equal_the_torch_twin(nets, images, method, layer):
    mine, theirs = both(nets, images, method, target=[1, 3, 0], layer=layer)
    assert mine.layer == layer and mine.values.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(mine.values, theirs.values.numpy(), **TOL)


def test_top_class_cams_and_the_default_layer(nets, images):
    mine, theirs = both(nets, images, "gradcam", layer=None)  # Keras: the last 4-D layer, relu2
    reference = ak.explain(nets[0], images, method="gradcam", layer="features.4")
    assert mine.layer == "relu2"
    np.testing.assert_allclose(mine.values, reference.values.numpy(), **TOL)
    np.testing.assert_array_equal(mine.target, reference.target)


def test_integrated_gradients_equal_captum(nets, images):
    """Captum's rules but its trapezoid (whose weights sum to n/(n-1); attribkit's sum to 1)."""
    net, model = nets
    baseline = torch.full((1, 3, 8, 8), -0.3)
    for method in ("gausslegendre", "riemann_left", "riemann_middle", "riemann_right"):
        mine = ak.explain(model, nhwc(images), method="integrated_gradients", target=[0, 1, 2],
                          n_steps=7, integration_method=method, baseline=nhwc(baseline)[0],
                          **keras_kwargs(model))
        captum = IntegratedGradients(net).attribute(images, baselines=baseline, target=[0, 1, 2], n_steps=7,
                                                    method=method)
        np.testing.assert_allclose(mine.values, captum.detach().numpy(), **TOL)


def test_occlusion_and_evaluate_equal_the_torch_twin(nets, images):
    net, model = nets
    x = nhwc(images)
    mine = ak.explain(model, x, method="occlusion", target=[0, 1, 2], **keras_kwargs(model))
    theirs = ak.explain(net, images, method="occlusion", target=[0, 1, 2])
    np.testing.assert_allclose(mine.values, theirs.values.numpy(), **TOL)
    if keras_kwargs(model):
        pytest.xfail("the core takes a Keras model on the PyTorch backend (an nn.Module) for a PyTorch one")
    metrics = ["deletion_auc", "insertion_auc", "faithfulness_estimate"]
    scores = ak.evaluate(model, x, mine, metrics=metrics)
    reference = ak.evaluate(net, images, theirs, metrics=metrics)
    for name in metrics:
        np.testing.assert_allclose(scores[name].scores.numpy(), reference[name].scores.numpy(), **TOL)


def test_the_model_is_left_as_it_was(nets, images):
    _, model = nets
    before = weights(model)
    for method in ("saliency", "integrated_gradients", "gradcam", "eigencam"):
        ak.explain(model, nhwc(images), method=method, **keras_kwargs(model))
    assert all(np.array_equal(a, b) for a, b in zip(before, weights(model)))
    assert all("call" not in layer.__dict__ for layer in model.layers)


def test_a_channels_first_model_takes_and_reads_nchw(images):
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    L = keras.layers
    model = keras.Sequential([keras.Input((3, 8, 8)), L.Conv2D(4, 3, padding="same", data_format="channels_first",
                                                               name="conv"),
                              L.ReLU(name="relu"), L.GlobalAveragePooling2D(data_format="channels_first"),
                              L.Dense(3, name="fc")])
    model.get_layer("conv").set_weights([net[0].weight.detach().permute(2, 3, 1, 0).numpy(),
                                         net[0].bias.detach().numpy()])
    model.get_layer("fc").set_weights([net[4].weight.detach().T.numpy(), net[4].bias.detach().numpy()])
    for method, options in (("input_x_gradient", {}), ("gradcam", {"layer": "relu"})):
        mine = ak.explain(model, images.numpy(), method=method, **options, **keras_kwargs(model))
        theirs = ak.explain(net, images, method=method, **{k: "1" for k in options})
        assert mine.meta["input_layout"] == "NCHW"
        np.testing.assert_allclose(mine.values, theirs.values.numpy(), **TOL)


def test_new_weights_are_read_at_each_call(images):
    """The JAX functions are compiled once per model; the weights are arguments, read afresh."""
    from keras_twins import keras_cnn, torch_cnn

    net = torch_cnn()
    model = keras_cnn(net)
    first = ak.explain(model, nhwc(images), method="gradcam", layer="relu2", target=1, **keras_kwargs(model))
    with torch.no_grad():
        net.fc.weight.mul_(-2.0)
    model.get_layer("fc").set_weights([net.fc.weight.detach().T.numpy(), net.fc.bias.detach().numpy()])
    again = ak.explain(model, nhwc(images), method="gradcam", layer="relu2", target=1, **keras_kwargs(model))
    theirs = ak.explain(net, images, method="gradcam", layer="features.4", target=1)
    assert not np.allclose(first.values, again.values)
    np.testing.assert_allclose(again.values, theirs.values.numpy(), **TOL)
