"""The model comes back exactly as it was from every Captum adapter: normal runs,
out-of-range targets, and models that raise (before and inside Captum); batched
results equal per-image results."""

import warnings

import pytest
import torch

import attribkit as ak
from attribkit.errors import AttributionWarning
from attribkit.errors import InputError, TargetError
from attribkit.testing import RaiseOnCall, TinyCNN, as_users_have_it, assert_model_untouched
from attribkit_captum.callsites import DEEPLIFT_FAMILY
from attribkit_captum.table import SUPPORTED


def SmallCNN():  # noqa: N802 - conftest's model, not imported from it: the framework plugins' suites
    return TinyCNN(4, widths=(6, 8))  # have a conftest too, and make test collects them in one session


ENTRIES = pytest.mark.parametrize("entry", SUPPORTED, ids=lambda e: e.name)


def prepared_model():
    """The suite's SmallCNN as users really have it (``attribkit.testing.as_users_have_it``)."""
    torch.manual_seed(0)
    return as_users_have_it(SmallCNN())


def attributes(model):
    """Every submodule's attribute names (Captum keeps state on modules)."""
    return [(name, sorted(vars(m))) for name, m in model.named_modules()]


def layer_kwargs(entry, prefix=""):
    return {"layer": prefix + "features"} if entry.layer else {}


@ENTRIES
def test_normal_run_leaves_model_untouched_and_warns_nothing(entry, images):
    model = prepared_model()
    before = attributes(model)
    with assert_model_untouched(model), warnings.catch_warnings():
        warnings.simplefilter("error")
        # a statement about the maps, not the guard: captum.lime's default fit on this
        # untrained CNN gives all-zero maps, and attribkit says so
        warnings.simplefilter("ignore", AttributionWarning)
        result = ak.explain(model, images, method=entry.method_name)
    assert attributes(model) == before
    assert model.training and not model.features[0].weight.requires_grad
    assert len(result.target) == len(images)


@ENTRIES
def test_out_of_range_target_raises_target_error(entry, images):
    model = prepared_model()
    before = attributes(model)
    with assert_model_untouched(model), pytest.raises(TargetError, match="out of range"):
        ak.explain(model, images, 99, method=entry.method_name, **layer_kwargs(entry))
    assert attributes(model) == before


@ENTRIES
@pytest.mark.parametrize("call", [1, 2], ids=["in-target-probe", "inside-captum"])
def test_model_that_raises(entry, call, images):
    model = RaiseOnCall(prepared_model(), call).train()
    before = attributes(model)
    with assert_model_untouched(model), \
            pytest.raises(RuntimeError, match="boom in forward") as raised:
        ak.explain(model, images, [0, 1, 2], method=entry.method_name,
                   **layer_kwargs(entry, "inner."))
    assert attributes(model) == before
    in_captum = any("/captum/" in str(frame.path) for frame in raised.traceback)
    assert in_captum == (call == 2)
    # the DeepLift family runs on a private copy, which counts its own calls
    assert len(model.calls) == (0 if entry.cls in DEEPLIFT_FAMILY else call)


@ENTRIES
def test_batched_equals_per_image(entry, model, images):
    targets = [0, 1, 2]
    kwargs = layer_kwargs(entry)
    whole = ak.explain(model, images, targets, method=entry.method_name, **kwargs).values
    if entry.cls in ("FeaturePermutation", "LayerFeaturePermutation"):
        # permutes features across the images of a chunk: one image alone cannot work
        with pytest.raises(InputError, match="at least 2 images per chunk"):
            ak.explain(model, images[:1], 0, method=entry.method_name, **kwargs)
        return
    single = torch.cat([ak.explain(model, images[i:i + 1], targets[i], method=entry.method_name,
                                   **kwargs).values for i in range(len(images))])
    torch.testing.assert_close(whole, single, rtol=1e-4, atol=1e-6)


def test_a_users_lrp_rule_survives_and_lrp_attributes_are_cleaned_up(model, images):
    from captum.attr._utils.lrp_rules import EpsilonRule

    rule = EpsilonRule(epsilon=1e-3)
    model.fc.rule = rule  # Captum's LRP deletes every .rule when it finishes
    before = attributes(model)
    with assert_model_untouched(model):
        ak.explain(model, images, method="captum.lrp")
    assert model.fc.rule is rule
    assert attributes(model) == before


def test_lrp_weights_restored_when_model_raises_under_a_weight_changing_rule(images):
    from captum.attr._utils.lrp_rules import GammaRule

    model = prepared_model()
    model.features[3].rule = GammaRule(gamma=0.5)  # changes conv weights during LRP
    wrapped = RaiseOnCall(model, 3).eval()           # raise in Captum's 2nd forward
    with assert_model_untouched(wrapped), pytest.raises(RuntimeError, match="boom"):
        ak.explain(wrapped, images, 0, method="captum.lrp")
    assert isinstance(model.features[3].rule, GammaRule)
