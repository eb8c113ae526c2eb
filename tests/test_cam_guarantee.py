"""The CAM family leaves the model as it was (normal runs, bad targets, raising
models), gives batched results equal to per-image ones, and works under every
autograd mode it can."""

import pytest
import torch

import attribkit as ak
from attribkit.errors import GradientModeError, InvalidOptionError, TargetError
from attribkit.testing import RaiseOnCall as Raising
from attribkit.testing import assert_model_untouched
from tests.cam_support import CAM_METHODS, FORWARD_ONLY, PER_CHANNEL
from tests.test_guard import prepared_model


# --------------------------------------------------------- the model guarantee


@pytest.mark.parametrize("method", CAM_METHODS)
def test_normal_run_leaves_the_model_untouched(method, images):
    model = prepared_model()
    with assert_model_untouched(model):
        r = ak.explain(model, images, method=method)
    assert model.training and not model.features[0].weight.requires_grad
    assert r.layer == "features" and r.method == method


@pytest.mark.parametrize("method", CAM_METHODS)
def test_out_of_range_target_leaves_the_model_untouched(method, images):
    model = prepared_model()
    with assert_model_untouched(model), pytest.raises(TargetError, match="out of range"):
        ak.explain(model, images, 99, method=method)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_raising_model_leaves_the_model_untouched(method, images):
    model = Raising(prepared_model()).train()
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom in forward"):
        ak.explain(model, images, method=method, layer="inner.features")


@pytest.mark.parametrize("method", CAM_METHODS)
def test_batched_equals_per_image(method, tiny_cnn):
    torch.manual_seed(6)
    x = torch.randn(5, 3, 12, 12)
    targets = [0, 1, 2, 3, 4]
    whole = ak.explain(tiny_cnn, x, targets, method=method)
    chunked = ak.explain(tiny_cnn, x, targets, method=method, batch_size=2)
    single = ak.explain(tiny_cnn, x, targets, method=method, batch_size=1)
    torch.testing.assert_close(whole.values, single.values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked.values, single.values, rtol=1e-5, atol=1e-6)
    assert whole.target.tolist() == targets


@pytest.mark.parametrize("method", PER_CHANNEL)
def test_forward_batch_size_does_not_change_the_result(method, tiny_cnn, images):
    small = ak.explain(tiny_cnn, images, method=method, forward_batch_size=5)
    big = ak.explain(tiny_cnn, images, method=method, forward_batch_size=1000)
    torch.testing.assert_close(small.values, big.values)
    with pytest.raises(InvalidOptionError, match="forward_batch_size must be a positive integer"):
        ak.explain(tiny_cnn, images, method=method, forward_batch_size=0)


# ------------------------------------------------------------- autograd modes


@pytest.mark.parametrize("method", CAM_METHODS)
def test_works_inside_no_grad_with_frozen_parameters(method, tiny_cnn, images):
    expected = ak.explain(tiny_cnn, images, method=method).values
    for p in tiny_cnn.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        r = ak.explain(tiny_cnn, images, method=method)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(r.values, expected)
    assert not any(p.requires_grad for p in tiny_cnn.parameters())


@pytest.mark.parametrize("method", CAM_METHODS)
def test_inference_mode(method, tiny_cnn, images):
    if method in FORWARD_ONLY:
        expected = ak.explain(tiny_cnn, images, method=method).values
        with torch.inference_mode():
            r = ak.explain(tiny_cnn, images, method=method)
        torch.testing.assert_close(r.values, expected)
    else:
        with torch.inference_mode(), pytest.raises(GradientModeError, match="inference_mode"):
            ak.explain(tiny_cnn, images, method=method)
