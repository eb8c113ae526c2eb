"""Bad inputs on the jax backend: one clear error, before any work, the model untouched."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn
from flax import nnx
from jax_twins import LinenCNN

import attribkit as ak
from attribkit.errors import InvalidOptionError, LayerError, MissingDependencyError, TargetError


def leaves(tree):
    return [np.asarray(leaf).copy() for leaf in jax.tree_util.tree_leaves(tree)]


def test_unknown_layer_lists_the_linen_submodules(linen, nhwc):
    with pytest.raises(LayerError, match="no layer 'conv9'.*'conv1', 'bn', 'conv2', 'Dropout_0', 'fc'$"):
        ak.explain(linen, nhwc, method="gradcam", layer="conv9")


def test_unknown_layer_lists_the_nnx_submodules(nnx_cnn, nhwc):
    with pytest.raises(LayerError, match="no layer 'conv9'.*'bn'.*'conv1'.*'conv2'.*'drop'.*'fc'"):
        ak.explain(nnx_cnn, nhwc, method="gradcam", layer="conv9")


def test_a_plain_function_has_no_layers(nhwc):
    def f(x):
        return x.mean((1, 2))

    with pytest.raises(LayerError, match="no Flax submodules"):
        ak.explain(f, nhwc, method="gradcam", layer="conv2", backend="jax")


def test_a_layer_without_a_spatial_output_is_refused(linen, nhwc):
    with pytest.raises(LayerError, match="spatial"):
        ak.explain(linen, nhwc, method="gradcam", layer="fc")


def test_region_target_is_refused(linen, nhwc):
    with pytest.raises(TargetError, match="target"):
        ak.explain(linen, nhwc, ak.Region(1), method="saliency")


def test_out_of_range_class_is_refused(linen, nhwc):
    with pytest.raises(TargetError, match="out of range"):
        ak.explain(linen, nhwc, 7, method="saliency")


def test_method_without_framework_kernel_names_the_usable_ones(linen, nhwc):
    with pytest.raises(InvalidOptionError, match="guided_backprop.*no kernel for jax.*saliency.*gradcam"):
        ak.explain(linen, nhwc, method="guided_backprop")


def test_missing_jax_names_the_extra(linen, nhwc, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax -> ImportError
    with pytest.raises(MissingDependencyError, match=r"attribkit\[jax\]"):
        ak.explain(linen, nhwc, method="saliency")


def test_unbound_linen_module_needs_its_variables(variables, nhwc):
    with pytest.raises(InvalidOptionError, match="unbound Flax linen module.*params=variables"):
        ak.explain(LinenCNN(), nhwc, method="saliency")
    ours = ak.explain(LinenCNN(), nhwc, method="saliency", params=variables)
    assert ours.values.shape == (3, 3, 8, 8)


def test_function_of_params_needs_params(function, nhwc):
    with pytest.raises(InvalidOptionError, match=r"takes \(params, x\): pass params="):
        ak.explain(function, nhwc, method="saliency", backend="jax")


def test_linen_model_stuck_in_training_mode_gets_the_hint(nhwc):
    class Training(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.BatchNorm(use_running_average=False)(nn.Conv(2, (3, 3))(x))
            return x.mean((1, 2))

    variables = {"params": {"Conv_0": {"kernel": jnp.ones((3, 3, 3, 2)), "bias": jnp.zeros(2)},
                            "BatchNorm_0": {"scale": jnp.ones(2), "bias": jnp.zeros(2)}},
                 "batch_stats": {"BatchNorm_0": {"mean": jnp.zeros(2), "var": jnp.ones(2)}}}
    with pytest.raises(InvalidOptionError, match="updates its variables.*call_kwargs"):
        ak.explain(Training().bind(variables), nhwc, method="saliency")


def test_bad_call_kwargs_and_layout(linen, nhwc):
    with pytest.raises(InvalidOptionError, match="call_kwargs must be a dict"):
        ak.explain(linen, nhwc, method="saliency", call_kwargs=["train"])
    with pytest.raises(InvalidOptionError, match="layout must be one of"):
        ak.explain(linen, nhwc, method="saliency", layout="HWC")


@pytest.mark.parametrize("kind", ["linen", "nnx_cnn"])
def test_models_are_unchanged(request, kind, nhwc):
    model = request.getfixturevalue(kind)
    state = (lambda: model.variables) if kind == "linen" else (lambda: nnx.state(model))
    before, structure = leaves(state()), jax.tree_util.tree_structure(state())
    for method in ("saliency", "gradcam", "eigencam"):
        ak.explain(model, nhwc, method=method)
    with pytest.raises(LayerError):
        ak.explain(model, nhwc, method="gradcam", layer="conv9")
    after = leaves(state())
    assert len(before) == len(after) and all(np.array_equal(a, b) for a, b in zip(before, after))
    assert jax.tree_util.tree_structure(state()) == structure
    if kind == "nnx_cnn":  # run in eval mode on a copy: the model's own flags are as they were
        assert model.bn.use_running_average is False and model.drop.deterministic is False
