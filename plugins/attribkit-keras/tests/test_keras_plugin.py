"""Registration, claiming, errors, a missing Keras, and the model left as it was."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import torch

import attribkit as ak
import attribkit_keras
from attribkit.errors import InputError, InvalidOptionError, MissingDependencyError, TargetError
from attribkit.host import get_host
from keras_twins import keras_kwargs, nhwc


def test_the_plugin_registers_the_keras_backend_and_import_attribkit_imports_no_keras():
    spec = get_host().backends.get("keras")
    assert spec.plugin == "keras" and spec.requires == ("keras",) and "attribkit[keras]" in spec.extra
    code = ("import sys, attribkit as ak; from attribkit.host import get_host; "
            "assert 'keras' in [s.name for s in get_host().backends]; "
            "ak.explain; print(sorted(m for m in ('keras', 'jax', 'tensorflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "keras" not in done.stdout


def test_claims_keras_models_and_their_subclasses_only(nets, skip_nets):
    class Mine(keras.Model):  # lives in this test module, not in keras.*
        def call(self, x):
            return x

    assert type(Mine()).__module__ == __name__
    for model in (nets[1], skip_nets[1], Mine()):
        assert attribkit_keras.claims(model)
    for other in (keras.layers.Dense(2), nets[0], np.zeros(3), "keras.Model", len):
        assert not attribkit_keras.claims(other)


def test_as_predict_takes_channel_first_batches(nets, images):
    net, model = nets
    if keras_kwargs(model):
        pytest.xfail("the core takes a Keras model on the PyTorch backend (an nn.Module) for a PyTorch one")
    predict = ak.as_predict(model)
    assert predict.model_layout == "NHWC"
    np.testing.assert_allclose(np.asarray(predict(images.numpy())), net(images).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


def test_refusals_leave_the_model_alone(nets, images):
    _, model = nets
    kw, x = keras_kwargs(model), nhwc(images)
    with pytest.raises(TargetError, match="target objects and callables read PyTorch outputs"):
        ak.explain(model, x, method="saliency", target=ak.Region(1), **kw)
    with pytest.raises(InvalidOptionError, match="'guided_backprop' has no kernel for keras models"):
        ak.explain(model, x, method="guided_backprop", **kw)
    with pytest.raises(TargetError, match="target class 7 is out of range: the model has 4 classes"):
        ak.explain(model, x, method="gradcam", target=7, **kw)
    assert all("call" not in layer.__dict__ for layer in model.layers)


def test_models_the_backend_cannot_explain():
    two = keras.Model(inputs := keras.Input((4, 4, 3)), [keras.layers.Flatten()(inputs)] * 2)
    with pytest.raises(InputError, match="returns list"):
        ak.explain(two, np.ones((1, 4, 4, 3), np.float32), method="saliency", **keras_kwargs(two))
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(InputError, match="is not built"):
        ak.explain(unbuilt, np.ones((1, 4), np.float32), method="saliency", **keras_kwargs(unbuilt))


def test_a_keras_backend_without_gradients_is_named(nets, images, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    with pytest.raises(MissingDependencyError, match="set KERAS_BACKEND=jax"):
        ak.explain(nets[1], nhwc(images), method="saliency", backend="keras")


def test_a_missing_keras_names_the_extra(nets, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # import keras now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'attribkit\[keras\]'"):
        ak.explain(nets[1], nhwc(images), method="saliency", **keras_kwargs(nets[1]))


def test_no_gradient_is_left_on_the_variables(nets, images):
    if keras.backend.backend() != "torch":
        pytest.skip("on JAX the calls are stateless: there is nowhere to leave a gradient")
    _, model = nets
    ak.explain(model, nhwc(images), method="gradcam", **keras_kwargs(model))
    ak.explain(model, nhwc(images), method="saliency", **keras_kwargs(model))
    assert all(isinstance(v.value, torch.Tensor) and v.value.grad is None for v in model.variables)
