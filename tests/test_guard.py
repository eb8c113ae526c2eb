"""The model comes back exactly as it was, whatever happens inside explain()."""

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import TargetError
from attribkit.testing import assert_model_untouched
from attribkit.torch import model_guard

from attribkit.testing import RaiseOnCall as Raising
from attribkit.testing import TinyCNN, as_users_have_it


def prepared_model():
    """A TinyCNN as users really have it (see ``attribkit.testing.as_users_have_it``)."""
    torch.manual_seed(0)
    return as_users_have_it(TinyCNN())


# Every registered method that runs on a module (built-ins and installed plugins).
METHODS = [s.name for s in ak.methods() if "forward" not in s.needs or "module" in s.needs]
# the attention family needs a transformer; tests/test_attention.py checks these guarantees on ViTs
ON_TINY_CNN = [m for m in METHODS if "attention" not in ak.get_method(m).needs]


def layer_for(method, prefix=""):
    return {"layer": prefix + "features"} if "layer" in ak.get_method(method).needs else {}


@pytest.mark.parametrize("method", ON_TINY_CNN)
def test_normal_run(method, images):
    model = prepared_model()
    with assert_model_untouched(model):
        ak.explain(model, images, method=method)
    assert model.training and not model.features[0].weight.requires_grad


@pytest.mark.parametrize("method", METHODS)
def test_out_of_range_target(method, images):
    model = prepared_model()
    with assert_model_untouched(model), pytest.raises(TargetError, match="out of range"):
        ak.explain(model, images, 99, method=method, **layer_for(method))


@pytest.mark.parametrize("method", METHODS)
def test_model_that_raises_in_forward(method, images):
    model = Raising(prepared_model()).train()
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom in forward"):
        ak.explain(model, images, method=method, **layer_for(method, "inner."))


@pytest.mark.parametrize("method", [m for m in ON_TINY_CNN if ak.get_method(m).batch_independent])
def test_batched_equals_per_image(method, images):
    model = prepared_model()
    targets = [0, 1, 2, 3]
    # noise depends on the batch; with zero noise the batching path is still exercised
    kwargs = {**layer_for(method), **({"stdev": 0.0} if "stdev" in ak.get_method(method).options else {})}
    whole = ak.explain(model, images, targets, method=method, **kwargs).values
    single = torch.cat([ak.explain(model, images[i:i + 1], targets[i], method=method, **kwargs).values
                        for i in range(len(images))])
    torch.testing.assert_close(whole, single, rtol=1e-4, atol=1e-6)


def test_guard_removes_hooks_added_inside_and_restores_everything():
    model = prepared_model()
    with assert_model_untouched(model), pytest.raises(ValueError):
        with model_guard(model):
            assert not model.training
            model.features[2].register_forward_hook(lambda m, i, o: None)
            model.fc.register_full_backward_hook(lambda m, gi, go: None)
            nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
            model.fc.bias.requires_grad_(False)
            model.fc.weight.grad = None
            raise ValueError("inside")


@pytest.mark.parametrize("change, message", [
    (lambda m: m.fc.register_forward_hook(lambda *a: None), "hooks of fc changed"),
    (lambda m: m.eval(), "training changed"),
    (lambda m: m.fc.bias.requires_grad_(False), "fc.bias.requires_grad changed"),
    (lambda m: m.fc.weight.grad.add_(1), "fc.weight.grad values changed"),
    (lambda m: setattr(m.fc.bias, "grad", torch.zeros_like(m.fc.bias)), "fc.bias.grad was replaced"),
    (lambda m: m.fc.weight.data.mul_(2), "fc.weight changed"),
    (lambda m: m.features[1].running_mean.add_(1), "features.1.running_mean changed"),
])
def test_the_helper_detects_each_kind_of_change(change, message):
    model = prepared_model()
    with pytest.raises(AssertionError, match=message):
        with assert_model_untouched(model):
            change(model)


def test_repeated_calls_leave_no_hooks(images):
    model = prepared_model()
    with assert_model_untouched(model):
        for _ in range(20):
            ak.explain(model, images, method="activation_map", layer="features.2")
