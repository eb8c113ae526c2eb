"""Layer methods: a functional model with a skip connection, layer names, shared and nested layers."""

import keras
import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.errors import LayerError
from keras_twins import SKIP_LAYERS, keras_kwargs, nhwc

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.mark.parametrize("layer", list(SKIP_LAYERS))
@pytest.mark.parametrize("method", ["gradcam", "layercam", "eigencam"])
def test_a_skip_connection_equals_the_torch_twin(skip_nets, images, method, layer):
    """relu1's output feeds conv2 and the Add: its gradient sums both paths."""
    net, model = skip_nets
    mine = ak.explain(model, nhwc(images), method=method, target=[0, 1, 2], layer=layer, **keras_kwargs(model))
    theirs = ak.explain(net, images, method=method, target=[0, 1, 2], layer=SKIP_LAYERS[layer])
    np.testing.assert_allclose(mine.values, theirs.values.numpy(), **TOL)


def test_the_gradient_at_a_layer_with_two_consumers_sums_both_paths(skip_nets, images):
    """Independent of the CAM code: the layer gradient read by the backend equals a torch
    autograd gradient at relu1's output (two consumers), and the saliency its input gradient."""
    net, model = skip_nets
    fm = _wrap(model)
    found = fm.layer_gradients(nhwc(images), "relu1", np.array([2, 1, 0]))
    h = net.relu1(net.conv1(images)).detach().requires_grad_(True)
    scores = net.fc(net.relu2(net.add(net.conv2(h), h)).mean((2, 3)))
    (grad,) = torch.autograd.grad(scores[[0, 1, 2], [2, 1, 0]].sum(), h)
    np.testing.assert_allclose(found.gradients, nhwc(grad), **TOL)
    np.testing.assert_allclose(found.activations, nhwc(h.detach()), **TOL)
    np.testing.assert_allclose(found.scores, scores.detach().numpy(), **TOL)


def _wrap(model):
    from attribkit_keras.model import wrap

    return wrap(model)


def test_layer_names_and_the_default_layer(skip_nets, nets):
    fm = _wrap(skip_nets[1])
    assert fm.resolve_layer(None) == "relu2"  # the last layer with a 4-D output (gap is 2-D)
    assert fm.resolve_layer(skip_nets[1].get_layer("conv2")) == "conv2"
    with pytest.raises(LayerError, match=r"no layer 'conv9'; its layers: conv1, relu1, conv2, add, relu2, gap, fc"):
        ak.explain(skip_nets[1], np.zeros((1, 8, 8, 3), np.float32), method="gradcam", layer="conv9",
                   **keras_kwargs(skip_nets[1]))
    with pytest.raises(LayerError, match="must be a layer name"):
        fm.resolve_layer(nets[1].get_layer("conv1"))  # a layer of another model


def test_a_layer_without_a_spatial_output_is_refused(nets, images):
    with pytest.raises(LayerError, match=r"layer 'gap' gives shape \(3, 8\)"):
        ak.explain(nets[1], nhwc(images), method="gradcam", layer="gap", **keras_kwargs(nets[1]))


def test_a_shared_layer_is_refused_and_the_model_restored():
    conv = keras.layers.Conv2D(3, 3, padding="same", name="shared")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, name="fc")(keras.layers.GlobalAveragePooling2D()(conv(conv(inputs))))
    model = keras.Model(inputs, outputs)
    with pytest.raises(LayerError, match="'shared' is called 2 times in one forward"):
        ak.explain(model, np.ones((1, 8, 8, 3), np.float32), method="gradcam", layer="shared",
                   **keras_kwargs(model))
    assert "call" not in conv.__dict__


def test_a_nested_models_layer_and_a_subclassed_model(nets, images):
    net, twin = nets
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, keras.layers.Identity(name="same")(twin(inputs)), name="outer")
    mine = ak.explain(outer, nhwc(images), method="gradcam", target=[0, 1, 2], layer="twin/relu2",
                      **keras_kwargs(outer))
    theirs = ak.explain(net, images, method="gradcam", target=[0, 1, 2], layer="features.4")
    np.testing.assert_allclose(mine.values, theirs.values.numpy(), **TOL)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.inner = twin

        def call(self, x):
            return self.inner(x)

    sub = Sub()
    sub(nhwc(images))
    with pytest.raises(LayerError, match="no layer with a known 4-D output"):
        ak.explain(sub, nhwc(images), method="gradcam", **keras_kwargs(sub))
    mine = ak.explain(sub, nhwc(images), method="gradcam", target=[0, 1, 2], layer="twin/relu2",
                      **keras_kwargs(sub))
    np.testing.assert_allclose(mine.values, theirs.values.numpy(), **TOL)
