"""Perturbation methods through ``predict``: occlusion against Captum, the mask scorer
against a brute-force loop, any model kind, and the model guarantee."""

import numpy as np
import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.bench.peers import LIBRARIES, peer
from attribkit.perturbation import masked_scores
from attribkit.testing import RaiseOnCall, TinyCNN, as_users_have_it, assert_model_untouched
from attribkit.torch.targets import ChunkTarget


def small_model(dtype=torch.float64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 5)).to(dtype).eval()


@pytest.mark.parametrize("window, stride", [((4, 3), (2, 2)), ((3, 3), (3, 3)), ((5, 4), (4, 3)),
                                            ((13, 11), (1, 1)), ((1, 1), (1, 1))])
def test_occlusion_equals_captum(window, stride):
    pytest.importorskip(LIBRARIES["captum"])
    m = small_model()
    x = torch.randn(3, 3, 13, 11, dtype=torch.float64)
    targets = [1, 2, 3]
    ours = ak.explain(m, x, targets, method="occlusion", window=window, stride=stride, baseline=0.5)
    theirs = peer("occlusion", "captum").call(m, x, targets, sliding_window_shapes=(3, *window),
                                              strides=(3, *stride), baselines=0.5)
    assert ours.values.shape == (3, 1, 13, 11)
    assert torch.equal(theirs, theirs[:, :1].expand_as(theirs))  # a (C, h, w) window: channels agree
    # Captum hands back float32 (rounding ~1e-9 here); measured at most 7e-9 apart
    torch.testing.assert_close(ours.values, theirs[:, :1].double(), rtol=0, atol=1e-7)
    assert ours.target.tolist() == targets


def test_occlusion_default_window_and_top_class():
    m = small_model()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    r = ak.explain(m, x, method="occlusion")
    pytest.importorskip(LIBRARIES["captum"])
    top = m(x).argmax(1)
    theirs = peer("occlusion", "captum").call(m, x, top, sliding_window_shapes=(3, 2, 2),
                                              strides=(3, 1, 1))
    torch.testing.assert_close(r.values, theirs[:, :1].double(), rtol=0, atol=1e-7)
    assert r.target.tolist() == top.tolist() and r.meta["backend"] == "torch"


def test_masked_scores_equals_a_loop():
    m = small_model()
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    masks = torch.rand(5, 1, 6, 6, dtype=torch.float64)
    baseline = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    target = ChunkTarget(torch.tensor([0, 4, 2]))
    target.indices_for(m(x))
    got = masked_scores(m, x, masks, target, baseline=baseline, rows=4, transform=lambda s: s.softmax(1))
    want = torch.tensor([[m((x[b] * masks[n] + baseline[b] * (1 - masks[n]))[None]).softmax(1)[0, t].item()
                          for n in range(5)] for b, t in enumerate([0, 4, 2])], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_any_model_kind_gives_the_same_map():
    m = small_model(torch.float32)
    x = torch.randn(3, 3, 8, 8)
    ref = ak.explain(m, x, [0, 1, 2], method="occlusion", window=3, stride=2)

    def numpy_model(batch):
        assert isinstance(batch, np.ndarray) and batch.dtype == np.float32
        assert batch.flags.c_contiguous
        return m(torch.from_numpy(batch)).detach().numpy()

    on_numpy = ak.explain(numpy_model, x.numpy(), [0, 1, 2], method="occlusion", window=3, stride=2,
                          batch_size=5)
    assert isinstance(on_numpy.values, np.ndarray) and on_numpy.meta["backend"] == "callable"
    np.testing.assert_allclose(on_numpy.values, ref.values.numpy(), rtol=0, atol=1e-6)
    per_image = torch.cat([ak.explain(m, x[i:i + 1], i, method="occlusion", window=3, stride=2).values
                           for i in range(3)])
    torch.testing.assert_close(ref.values, per_image, rtol=0, atol=1e-6)


def test_callable_target():
    m = small_model()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    diff = ak.explain(m, x, lambda s: s[:, 1] - s[:, 0], method="occlusion", window=4, stride=4)
    one = ak.explain(m, x, 1, method="occlusion", window=4, stride=4).values
    zero = ak.explain(m, x, 0, method="occlusion", window=4, stride=4).values
    torch.testing.assert_close(diff.values, one - zero)
    assert diff.target is None


def test_random_baseline_runs_on_a_numpy_callable():
    m = small_model(torch.float32)
    x = torch.randn(2, 3, 8, 8)
    via_numpy = ak.explain(lambda b: m(torch.from_numpy(b)).detach().numpy(), x.numpy(), method="random")
    assert np.array_equal(via_numpy.values, ak.explain(m, x, method="random").values.numpy())


def test_model_left_as_users_have_it():
    torch.manual_seed(0)
    m = as_users_have_it(TinyCNN())
    x = torch.randn(2, 3, 8, 8)
    with assert_model_untouched(m):
        ak.explain(m, x, method="occlusion", window=4)
    with assert_model_untouched(m), pytest.raises(ak.TargetError, match="out of range"):
        ak.explain(m, x, 9, method="occlusion", window=4)
    raising = RaiseOnCall(TinyCNN(), 2)
    with assert_model_untouched(raising), pytest.raises(RuntimeError):
        ak.explain(raising, x, method="occlusion", window=4)


@pytest.mark.parametrize("options, match", [
    ({"window": 20}, r"window \(20, 20\) is larger than the images"),
    ({"window": 0}, "window must be a positive int"),
    ({"stride": (1, 2, 3)}, "stride must be a positive int or"),
])
def test_bad_options_are_named(options, match):
    with pytest.raises(ak.InvalidOptionError, match=match):
        ak.explain(small_model(), torch.randn(1, 3, 8, 8, dtype=torch.float64), method="occlusion", **options)


def test_bad_inputs_are_named():
    with pytest.raises(ak.InputError, match="needs images"):
        ak.explain(small_model(), torch.randn(3, 8, 8, dtype=torch.float64), method="occlusion")
    with pytest.raises(ak.InputError, match="floating-point"):
        ak.explain(small_model(), np.zeros((1, 3, 8, 8), np.int64), method="occlusion")
