"""The plugin itself: registration without importing JAX, which models it claims, the ways
to pass a function, layer names and objects, the layout, and the compiled-function cache."""

import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
import flax.linen as nn
from jax_twins import LinenCNN

import attribkit as ak
import attribkit_jax
from attribkit_jax import Model, claims

TOL = {"rtol": 1e-5, "atol": 1e-5}


def test_import_and_listing_do_not_import_jax():
    code = ("import sys, attribkit as ak\n"
            "from attribkit.host import get_host\n"
            "assert 'jax' in [b.name for b in get_host().backends], 'jax backend not registered'\n"
            "ak.methods()\n"
            "assert 'jax' not in sys.modules and 'flax' not in sys.modules, 'jax imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_claims(linen, nnx_cnn, function, torch_model):
    assert claims(linen) and claims(LinenCNN()) and claims(nnx_cnn) and claims(jax.jit(function))
    assert claims(Model(function, {}))
    assert not claims(function) and not claims(torch_model) and not claims(np.zeros(3))


def test_function_of_x_and_jitted_function(linen, variables, nhwc):
    expected = ak.explain(linen, nhwc, [0, 1, 2], method="saliency").values

    def f(x):
        return LinenCNN().apply(variables, x, train=False)

    plain = ak.explain(f, nhwc, [0, 1, 2], method="saliency", backend="jax")
    jitted = ak.explain(jax.jit(f), nhwc, [0, 1, 2], method="saliency")  # claimed: no backend=
    np.testing.assert_allclose(plain.values, expected, **TOL)
    np.testing.assert_allclose(jitted.values, expected, **TOL)


def test_model_wrapper_in_explain(linen, function, variables, nhwc):
    model = Model(function, variables)
    result = ak.explain(model, nhwc, method="gradcam", layer="conv2")  # layers of the linen module inside
    np.testing.assert_allclose(result.values, ak.explain(linen, nhwc, method="gradcam", layer="conv2").values,
                               **TOL)
    pair = Model(LinenCNN(), variables)  # the (module, variables) pair
    np.testing.assert_allclose(ak.explain(pair, nhwc, method="gradcam").values, result.values, **TOL)


def test_model_wrapper_in_predict_and_evaluate(linen, function, variables, torch_model, images, nhwc):
    model = Model(function, variables)
    predict = ak.as_predict(model)
    np.testing.assert_allclose(np.asarray(predict(images.numpy())), torch_model(images).detach().numpy(), **TOL)
    result = ak.explain(linen, nhwc, method="saliency")
    ours = ak.evaluate(model, nhwc, result, metrics=["deletion_auc"])["deletion_auc"].scores
    theirs = ak.evaluate(torch_model, images, result, metrics=["deletion_auc"])["deletion_auc"].scores
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), **TOL)


def test_layer_names_and_objects(linen, nnx_cnn, nhwc):
    by_name = ak.explain(nnx_cnn, nhwc, method="gradcam", layer="conv1").values
    assert ak.explain(nnx_cnn, nhwc, method="gradcam", layer=nnx_cnn.conv1).layer == "conv1"
    np.testing.assert_allclose(ak.explain(linen, nhwc, method="gradcam", layer="conv1").values, by_name, **TOL)


def test_call_kwargs_reach_the_model(variables, nhwc):
    calls = []

    def f(params, x, *, scale):
        calls.append(scale)
        return LinenCNN().apply(params, x, train=False) * scale

    one = ak.explain(f, nhwc, 1, method="saliency", backend="jax", params=variables, call_kwargs={"scale": 1.0})
    two = ak.explain(f, nhwc, 1, method="saliency", backend="jax", params=variables, call_kwargs={"scale": 2.0})
    np.testing.assert_allclose(two.values, 2 * one.values, **TOL)
    assert calls == [1.0, 2.0]  # each traced once, with its own keywords


def test_nchw_function(variables, nhwc):
    def f(params, x):  # a model that takes channel-first batches
        return LinenCNN().apply(params, x.transpose(0, 2, 3, 1), train=False)

    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    ours = ak.explain(f, nchw, 2, method="input_x_gradient", backend="jax", params=variables, layout="NCHW")
    linen = ak.explain(LinenCNN(), nhwc, 2, method="input_x_gradient", params=variables)
    np.testing.assert_allclose(ours.values, linen.values, **TOL)


def test_compiled_once_per_model_and_shape(variables, nhwc):
    traces = []

    def f(params, x):
        traces.append(x.shape)
        return LinenCNN().apply(params, x, train=False)

    model = Model(f, variables)
    for _ in range(3):
        ak.explain(model, nhwc, method="saliency")
    ak.explain(model, nhwc[:2], method="saliency")
    assert traces == [(3, 8, 8, 3), (2, 8, 8, 3)]


TRACES = []


class Counted(nn.Module):
    """Records each trace of its forward."""

    @nn.compact
    def __call__(self, x):
        TRACES.append(x.shape)
        return nn.Dense(2)(x.mean((1, 2)))


def test_bound_linen_module_compiled_once(nhwc):
    """A bound module refuses hash(): the cache holds it by identity (was: one compile per call)."""
    model = Counted().bind({"params": {"Dense_0": {"kernel": np.ones((3, 2), np.float32),
                                                   "bias": np.zeros(2, np.float32)}}})
    TRACES.clear()
    for _ in range(3):
        ak.explain(model, nhwc, 1, method="saliency")
    assert TRACES == [(3, 8, 8, 3)]


def test_threads_share_one_nnx_model(nnx_cnn, nhwc):
    expected = ak.explain(nnx_cnn, nhwc, method="gradcam").values
    results, errors = [], []

    def work():
        try:
            results.append(ak.explain(nnx_cnn, nhwc, method="gradcam").values)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 4
    assert all(np.array_equal(r, expected) for r in results)


def test_backend_registered_with_its_options():
    from attribkit.host import get_host

    spec = get_host().backends.get("jax")
    assert spec.factory == "attribkit_jax.model:wrap" and spec.requires == ("jax",)
    assert dict(spec.options) == {"params": None, "layout": "NHWC", "call_kwargs": None}
    assert spec.extra == attribkit_jax.INSTALL_HINT == "pip install 'attribkit[jax]'"


def test_wrapper_refuses_conflicting_params(function, variables, nhwc):
    from attribkit.errors import InvalidOptionError

    with pytest.raises(InvalidOptionError, match="holds its params already"):
        ak.explain(Model(function, variables), nhwc, method="saliency", params=variables)


class Shared(nn.Module):
    """One conv applied twice (setup-defined, so ``bound.conv`` is the bound submodule)."""

    def setup(self):
        self.conv = nn.Conv(3, (3, 3), padding=1)
        self.fc = nn.Dense(2)

    def __call__(self, x):
        return self.fc(self.conv(nn.relu(self.conv(x))).mean((1, 2)))


def test_layer_called_twice_is_read_at_its_last_call(nhwc):
    """Activations and gradient at the second call, by hand: A2 = conv(relu(conv(x))),
    S = fc(mean(A2)), so ∂S_k/∂A2 = W_fc[:, k] / (h·w) at every position."""
    rng = np.random.default_rng(0)
    variables = {"params": {"conv": {"kernel": rng.normal(size=(3, 3, 3, 3)).astype(np.float32),
                                     "bias": np.zeros(3, np.float32)},
                            "fc": {"kernel": rng.normal(size=(3, 2)).astype(np.float32),
                                   "bias": np.zeros(2, np.float32)}}}
    bound = Shared().bind(variables)
    from attribkit_jax.model import wrap

    fm = wrap(bound)
    assert fm.resolve_layer(bound.conv) == "conv"
    found = fm.layer_gradients(nhwc, "conv", np.array([1, 1, 1]))
    conv = nn.Conv(3, (3, 3), padding=1)
    once = conv.apply({"params": variables["params"]["conv"]}, nhwc)
    twice = conv.apply({"params": variables["params"]["conv"]}, jax.nn.relu(once))
    np.testing.assert_allclose(found.activations, np.asarray(twice), **TOL)
    expected = np.broadcast_to(variables["params"]["fc"]["kernel"][:, 1] / 64, found.gradients.shape)
    np.testing.assert_allclose(found.gradients, expected, **TOL)
