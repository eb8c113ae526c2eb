"""The framework protocol (attribkit.backends) through its reference implementation:
a PyTorch module behind ``TorchModel`` in NHWC, registered by a test plugin, against the
PyTorch kernels (and Captum for integrated gradients). The JAX and Keras backends have
their own suites under plugins/."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.backends import BackendSpec
from attribkit.backends.torch_model import TorchModel
from attribkit.errors import (InputError, InvalidOptionError, MissingDependencyError, SpecError,
                              TargetError)
from attribkit.host import get_host
from attribkit.testing import TinyCNN, assert_model_untouched

LAYER = "features.3"


class ChannelLast:
    """A stand-in for another framework's model: a torch module that takes NHWC batches."""

    def __init__(self, module):
        self.module = module


class Plugin:
    @ak.hookimpl
    def register_backends(register):
        register(BackendSpec("nhwc_torch", claims=lambda m: isinstance(m, ChannelLast),
                             factory=lambda m, layout="NHWC": TorchModel(m.module, layout=layout),
                             options={"layout": "NHWC"}))


@pytest.fixture
def backend():
    info = get_host().add_plugin(Plugin, "nhwc-test", strict=True)
    assert info.backends == ("nhwc_torch",)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.rand(3, 3, 10, 10)


def nhwc(x):
    return x.permute(0, 2, 3, 1).numpy()


def values(result):
    v = result.values
    return v.numpy() if isinstance(v, torch.Tensor) else v


CASES = [
    ("saliency", {}), ("input_x_gradient", {}), ("saliency", {"abs": False, "take_max": True}),
    ("integrated_gradients", {"n_steps": 6}), ("integrated_gradients", {"n_steps": 5,
                                                                        "integration_method": "riemann_trapezoid",
                                                                        "baseline": 0.5}),
    ("smoothgrad", {"n_samples": 3, "seed": 7}),
    ("gradcam", {"layer": LAYER}), ("gradcam_pp", {"layer": LAYER}), ("hirescam", {"layer": LAYER}),
    ("xgradcam", {"layer": LAYER}), ("layercam", {"layer": LAYER}), ("eigencam", {"layer": LAYER}),
    ("occlusion", {"window": 4, "stride": 3}), ("rise", {"n_masks": 20, "seed": 0}),
]


@pytest.mark.parametrize("method,options", CASES, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CASES)])
def test_framework_path_equals_the_torch_kernels(backend, net, x, method, options):
    target = [1, 4, 0]
    expected = ak.explain(net, x, target, method=method, **options)
    with assert_model_untouched(net):
        got = ak.explain(ChannelLast(net), nhwc(x), target, method=method, batch_size=2, **options)
    assert isinstance(got.values, np.ndarray) and got.values.shape == tuple(expected.values.shape)
    np.testing.assert_allclose(got.values, values(expected), rtol=1e-5, atol=1e-6)
    assert np.asarray(got.target).tolist() == target
    assert got.meta["input_layout"] == "NHWC" and got.meta["framework"] == "torch"
    assert got.input_size == (10, 10) and got.layer == options.get("layer")


def test_channel_first_models_top_classes_and_the_default_layer(backend, net, x):
    expected = ak.explain(net, x, method="gradcam")
    got = ak.explain(ChannelLast(net), x.numpy(), method="gradcam", layout="NCHW")
    assert got.layer == expected.layer == "features"
    np.testing.assert_allclose(got.values, values(expected), rtol=1e-5, atol=1e-7)
    assert got.target.tolist() == expected.target.tolist() == net(x).argmax(1).tolist()
    assert got.meta["input_layout"] == "NCHW"


def test_integrated_gradients_equal_captum(backend, net, x):
    from captum.attr import IntegratedGradients

    baseline = torch.full_like(x, 0.25)
    reference = IntegratedGradients(net).attribute(x, baselines=baseline, target=2, n_steps=7,
                                                   method="riemann_middle")
    got = ak.explain(ChannelLast(net), nhwc(x), 2, method="integrated_gradients", n_steps=7,
                     integration_method="riemann_middle", baseline=nhwc(baseline[:1])[0])
    np.testing.assert_allclose(got.values, reference.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_saliency_is_a_hand_computed_gradient(backend):
    """A linear model: ∂S/∂x is the target row of the weights, in NCHW."""
    torch.manual_seed(3)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 4, bias=False))
    x = torch.randn(2, 2, 3, 3)
    got = ak.explain(ChannelLast(linear), nhwc(x), [3, 1], method="saliency", abs=False)
    weights = linear[1].weight.detach().reshape(4, 2, 3, 3)
    np.testing.assert_allclose(got.values, weights[[3, 1]].numpy(), rtol=1e-6)


def test_predict_and_evaluate_take_the_models_layout(backend, net, x):
    predict = ak.as_predict(ChannelLast(net))
    assert predict.model_layout == "NHWC"
    np.testing.assert_allclose(predict(x.numpy()), net(x).detach().numpy(), rtol=1e-6)
    result = ak.explain(net, x, [1, 4, 0], method="saliency")
    metrics = ("deletion_auc", "insertion_auc", "faithfulness_correlation")
    options = {"faithfulness_correlation": {"seed": 0, "nr_runs": 5, "subset_size": 8}}
    expected = ak.evaluate(net, x, result, metrics=metrics, options=options)
    got = ak.evaluate(ChannelLast(net), nhwc(x), result, metrics=metrics, options=options)
    for name in metrics:
        np.testing.assert_allclose(got[name].scores, expected[name].scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target,error,words", [
    (ak.targets.Region(1), TargetError, "target objects"),
    (lambda out: out[:, 0], TargetError, "callables"),
    ([1, 2], TargetError, "3 ints"),
    (-1, TargetError, ">= 0"),
    (5, TargetError, "out of range"),
])
def test_bad_targets_are_named(backend, net, x, target, error, words):
    with assert_model_untouched(net), pytest.raises(error, match=words):
        ak.explain(ChannelLast(net), nhwc(x), target, method="saliency")


@pytest.mark.parametrize("call,error,words", [
    (dict(method="guided_backprop"), InvalidOptionError, "no kernel for torch models; these run"),
    (dict(method="saliency", layer="features.0"), InvalidOptionError, "takes no layer"),
    (dict(method="saliency", noise_tunnel="smoothgrad"), InvalidOptionError, "method='smoothgrad'"),
    (dict(method="gradcam", layer=LAYER, prefix_tokens=1), InvalidOptionError, "prefix_tokens"),
    (dict(method="saliency", steps=3), InvalidOptionError, "has no option 'steps'"),
    (dict(method="saliency", backend="nope"), InvalidOptionError, "no backend 'nope'"),
    (dict(method="integrated_gradients", baseline=np.zeros((3, 10, 10))), InvalidOptionError,
     "model's layout"),
])
def test_bad_calls_are_named(backend, net, x, call, error, words):
    with assert_model_untouched(net), pytest.raises(error, match=words):
        ak.explain(ChannelLast(net), nhwc(x), 1, **call)


def test_bad_inputs_are_named(backend, net, x):
    bad = nhwc(x).copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        ak.explain(ChannelLast(net), bad, method="saliency")
    with pytest.raises(InputError, match="floating"):
        ak.explain(ChannelLast(net), np.ones((2, 10, 10, 3), dtype=np.int64), method="saliency")


def test_a_framework_without_its_plugin_names_the_extra(net):
    for plugin in [p for p in get_host().plugins if p.backends]:  # as if attribkit-jax were not installed
        get_host().remove_plugin(plugin.name)
    flax_class = type("Module", (), {"__module__": "flax.linen.module"})
    fake = type("MyCNN", (flax_class,), {"__module__": "__main__"})()  # the user's subclass
    with pytest.raises(MissingDependencyError, match=r"attribkit\[jax\]"):
        ak.explain(fake, np.zeros((1, 4, 4, 3), np.float32), method="saliency")


def test_missing_framework_module_names_the_extra(net, x):
    class Needs:
        @ak.hookimpl
        def register_backends(register):
            register(BackendSpec("needs", claims=lambda m: isinstance(m, ChannelLast),
                                 factory=lambda m: TorchModel(m.module), requires=("no_such_framework_xyz",),
                                 extra="pip install 'attribkit[xyz]'"))

    get_host().add_plugin(Needs, "needs", strict=True)
    with pytest.raises(MissingDependencyError, match=r"no_such_framework_xyz.*attribkit\[xyz\]"):
        ak.explain(ChannelLast(net), nhwc(x), method="saliency")


def test_spec_checks_and_duplicates():
    with pytest.raises(SpecError, match="lower-case"):
        BackendSpec("My-FW", claims=bool, factory=dict)
    with pytest.raises(SpecError, match="claims"):
        BackendSpec("fw", claims=None, factory=dict)
    with pytest.raises(SpecError, match="factory"):
        BackendSpec("fw", claims=bool, factory="not a factory")
    with pytest.raises(SpecError, match="framework must be"):
        ak.MethodSpec(name="m", family="other", factory=dict, framework="nonsense")
    class Again:
        register_backends = Plugin.register_backends

    get_host().add_plugin(Plugin, "first", strict=True)
    info = get_host().add_plugin(Again, "second")
    assert info.status == "failed" and "already registered by plugin 'first'" in info.error
    assert [b.name for b in get_host().backends].count("nhwc_torch") == 1


def test_torch_models_keep_the_fast_path(net, x):
    result = ak.explain(net, x, method="saliency")
    assert isinstance(result.values, torch.Tensor) and "framework" not in result.meta


def test_loading_the_plugins_imports_no_framework():
    code = ("import sys, attribkit as ak; ak.methods(); ak.plugins();"
            "bad = [m for m in ('jax', 'flax', 'keras', 'tensorflow') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_plugins_table_names_the_backends(backend, capsys):
    from attribkit.cli import main

    assert main(["plugins"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("nhwc-test"))
    assert "nhwc_torch" in row


def test_figures_read_a_framework_models_scores_through_its_backend(backend, net, x):
    from attribkit.viz.figures import model_scores

    expected = torch.softmax(net(x), 1).detach().numpy()
    np.testing.assert_allclose(model_scores(ChannelLast(net), nhwc(x)), expected, rtol=1e-5, atol=1e-7)
    figure = ak.compare(ChannelLast(net), nhwc(x)[:1], methods=["saliency", "gradcam"])
    assert len(figure.axes) >= 3
