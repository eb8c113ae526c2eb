"""The five Quantus 0.6 metrics added last (infidelity, consistency, relative
representation stability, eMPRT, sMPRT) against Quantus, in the same run, on the
case of :mod:`tests.test_quantus_metrics` (tiny one-channel CNN, 6 images of 18x18),
plus hand-checkable cases of the paper versions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from attribkit.evaluation.base import MetricInput
from attribkit.evaluation.faithfulness_correlation import infidelity
from attribkit.evaluation.randomisation import histogram_entropy
from attribkit.evaluation.robustness import consistency
from tests.test_quantus_metrics import B, case, gradient, ours, quantus_explain, theirs  # noqa: F401

quantus = pytest.importorskip("quantus")


# ------------------------------------------------------------------ infidelity

def test_infidelity_quantus_compat(case):
    """Quantus removes the squares cumulatively; compat reproduces it (float32 outputs in
    Quantus: relative 1e-7 measured on values of ~300)."""
    q = np.asarray(theirs(case, quantus.Infidelity(perturb_patch_sizes=[3, 6], n_perturb_samples=2,
                                                   disable_warnings=True), softmax=False), dtype=float)
    np.testing.assert_allclose(ours(case, "infidelity", perturb_patch_sizes=[3, 6], quantus_compat=True),
                               q, rtol=1e-5)


def test_infidelity_by_hand():
    """f(x) = <w, x> is linear, so its gradient w is exactly faithful: I^T w = f(x) - f(x - I)
    for every square, infidelity 0 (both versions). The map 2w misses each square's drop by
    I^T w: the paper's score is the mean over the squares of (I^T w)^2."""
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64)

    def predict(x):
        v = (x.double() * w).flatten(1).sum(1)
        return torch.stack([v, -v], 1)

    x = torch.rand(2, 1, 4, 4, generator=gen, dtype=torch.float64)
    base = MetricInput(predict=predict, inputs=x, relevance=w[0].expand(2, 4, 4), targets=torch.tensor([0, 0]))
    for compat in (False, True):
        assert infidelity(base, perturb_patch_sizes=[2], quantus_compat=compat).scores.abs().max() < 1e-6
    data = MetricInput(predict=predict, inputs=x, relevance=2 * w[0].expand(2, 4, 4), targets=torch.tensor([0, 0]))
    drop = x - x.flatten(1).amin(1).view(2, 1, 1, 1)  # black: the image's minimum
    square = (drop * w)[:, 0].unfold(1, 2, 2).unfold(2, 2, 2).sum((-1, -2)).flatten(1)  # (2, 4) I^T w
    expected = (square ** 2).mean(1)
    torch.testing.assert_close(infidelity(data, perturb_patch_sizes=[2]).scores.double(), expected,
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- consistency

@pytest.mark.parametrize("abs_", [True, False])
def test_consistency_quantus_compat(case, abs_):
    q = theirs(case, quantus.Consistency(abs=abs_, disable_warnings=True), softmax=True)
    np.testing.assert_allclose(ours(case, "consistency", abs=abs_, quantus_compat=True),
                               np.asarray(q, dtype=float), atol=1e-6)


def test_consistency_by_hand():
    """Maps 0, 1 share their top-2 pixels and signs, maps 2, 3 share theirs, map 4 is alone;
    predictions: 0, 0, 1, 0, 1. Image 0: its one twin agrees (1); image 2: its twin
    disagrees (0); image 4: no twin (0)."""
    rel = torch.zeros(5, 3, 3)
    rel[0, 0, 0], rel[0, 1, 1] = 3.0, -2.0
    rel[1, 0, 0], rel[1, 1, 1] = 5.0, -1.0
    rel[2, 2, 2], rel[2, 0, 1] = 4.0, 1.0
    rel[3, 2, 2], rel[3, 0, 1] = 2.0, 1.5
    rel[4, 1, 2], rel[4, 2, 0] = 1.0, 0.5
    rel += 0.01 * torch.arange(9.0).view(3, 3) / 9  # small, below the top two everywhere
    classes = torch.tensor([0, 0, 1, 0, 1])
    data = MetricInput(predict=lambda x: nn.functional.one_hot(classes[: len(x)], 2).float(),
                       inputs=torch.zeros(5, 1, 3, 3), relevance=rel, targets=classes)
    scores = consistency(data, n=2, abs=False).scores
    assert scores.tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


# ------------------------------------------------------ relative representation stability

@pytest.mark.parametrize("layers", [None, ["conv2"]])
def test_relative_representation_stability_in_expectation(case, layers):
    """Same uniform noise, independent draws: Quantus's value within 5 seed-to-seed standard
    deviations (4 seeds) of attribkit's mean, plus 2 %; the model is left without hooks."""
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    np.random.seed(0)
    q = np.asarray(theirs(case, quantus.RelativeRepresentationStability(
        nr_samples=40, layer_names=layers, return_nan_when_prediction_changes=False, disable_warnings=True),
        explain_func=quantus_explain, relevance=rel, softmax=False), dtype=float)
    runs = np.stack([ours(case, "relative_representation_stability", relevance=rel, nr_samples=40, seed=s,
                          layer_names=layers, return_nan_when_prediction_changes=False) for s in range(4)])
    mean, std = runs.mean(0), runs.std(0, ddof=1)
    assert np.all(np.abs(mean - q) <= 5 * std * np.sqrt(1 + 1 / 4) + 0.02 * np.abs(mean)), (mean, q, std)
    assert all(not m._forward_hooks for m in model.modules())


def test_relative_representation_stability_layer_option(case):
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    by_name = ours(case, "relative_representation_stability", relevance=rel, nr_samples=8, layer="conv2")
    by_list = ours(case, "relative_representation_stability", relevance=rel, nr_samples=8, layer_names=["conv2"])
    np.testing.assert_array_equal(by_name, by_list)
    with pytest.raises(ValueError, match="no layer named"):
        ours(case, "relative_representation_stability", relevance=rel, nr_samples=2, layer="nope")


# ----------------------------------------------------------------------- eMPRT, sMPRT

def test_histogram_entropy_is_numpys():
    gen = np.random.default_rng(0)
    rows = [gen.normal(size=300), np.linspace(0, 1, 301)[:300], np.full(300, 2.0), gen.integers(0, 7, 300) / 7]
    a = torch.tensor(np.stack(rows))
    expected = []
    for row in rows:
        counts, _ = np.histogram(row, bins=30)
        p = counts[counts > 0] / counts.sum()
        expected.append(-(p * np.log(p)).sum())
    np.testing.assert_allclose(histogram_entropy(a, 30).numpy(), expected, atol=1e-12)


def test_emprt(case):
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    q = theirs(case, quantus.EfficientMPRT(disable_warnings=True), explain_func=quantus_explain, relevance=rel)
    np.testing.assert_allclose(ours(case, "emprt", relevance=rel, quantus_compat=True), q, atol=1e-4)
    np.testing.assert_allclose(ours(case, "emprt", relevance=rel), q, atol=1e-4)  # the maps are the method's


@pytest.fixture
def quantus_explain_patched(monkeypatch):
    """Quantus's sMPRT calls ``quantus.explain`` (Captum) instead of ``explain_func``: make
    it the same input gradient."""
    monkeypatch.setattr(quantus, "explain", lambda model, inputs, targets, **kw: quantus_explain(model, inputs,
                                                                                                   targets))


def test_smprt_without_noise(case, quantus_explain_patched):
    """nr_samples=1 is the noise-free map only: deterministic, 1e-4."""
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    q = np.asarray(theirs(case, quantus.SmoothMPRT(nr_samples=1, return_average_correlation=True,
                                                   disable_warnings=True),
                          explain_func=quantus_explain, relevance=rel), dtype=float)
    np.testing.assert_allclose(ours(case, "smprt", relevance=rel, nr_samples=1, quantus_compat=True), q, atol=1e-4)
    layers = 3  # Quantus's mean also counts the passed maps vs the intact model's (1 here)
    np.testing.assert_allclose(ours(case, "smprt", relevance=rel, nr_samples=1), (q * (layers + 1) - 1) / layers,
                               atol=1e-4)


def test_smprt_in_expectation(case, quantus_explain_patched):
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    np.random.seed(0)
    q = np.asarray(theirs(case, quantus.SmoothMPRT(nr_samples=8, return_last_correlation=True,
                                                   disable_warnings=True),
                          explain_func=quantus_explain, relevance=rel), dtype=float)
    runs = np.stack([ours(case, "smprt", relevance=rel, nr_samples=8, noise_seed=s, return_last_correlation=True,
                          quantus_compat=True) for s in range(4)])
    mean, std = runs.mean(0), runs.std(0, ddof=1)
    assert np.all(np.abs(mean - q) <= 5 * std * np.sqrt(1 + 1 / 4) + 0.02 * np.abs(mean)), (mean, q, std)


# ------------------------------------------------------- colour pixels in pixel flipping

@pytest.fixture
def trapz(monkeypatch):
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def test_pixel_flipping_colour_channels(trapz):
    """Quantus 0.6 flips features_in_step *elements* of the channel-broadcast map per step.
    With C = 3 dividing it (6 elements = 2 whole pixels per step) that is attribkit's
    whole-pixel flipping with 2 pixels per step, and compat reproduces it. With 4 elements
    per step a pixel's channels are split over two steps in the order of Quantus's
    unstable np.argsort of tied values (here not index order): not reproducible, not compared."""
    import attribkit as ak

    gen = torch.Generator().manual_seed(3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 3)).eval()
    x = torch.rand(4, 3, 6, 6, generator=gen)
    a = torch.rand(4, 6, 6, generator=gen)
    y = model(x).argmax(1)

    def run(**options):
        return ak.evaluate(model, x, a, y, metrics=["pixel_flipping"],
                           options={"pixel_flipping": options})["pixel_flipping"].scores.double().numpy()

    def quantus_pf(step):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(quantus.PixelFlipping(features_in_step=step, return_auc_per_sample=True,
                                                    disable_warnings=True)(
                model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(),
                channel_first=True, device="cpu", softmax=True), dtype=float)

    q6 = quantus_pf(6)
    np.testing.assert_allclose(run(features_in_step=6, quantus_compat=True), q6, atol=1e-4)
    np.testing.assert_allclose(run(features_in_step=2), q6, atol=1e-4)  # whole pixels, 2 per step
    assert run(features_in_step=4, quantus_compat=True).shape == (4,)  # 27 steps of 4 elements


@pytest.mark.parametrize("name, options", [
    ("infidelity", {"perturb_patch_sizes": [8]}),
    ("consistency", {}),
    ("relative_representation_stability", {"nr_samples": 3, "layer_names": None}),
    ("emprt", {}),
    ("smprt", {"nr_samples": 2}),
])
def test_new_metrics_through_evaluate_with_a_method(name, options):
    """Each is registered and runs through ak.evaluate with method= on a colour model,
    one score per image, the model left untouched."""
    import attribkit as ak
    from attribkit.testing import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN().eval()
    x = torch.rand(3, 3, 32, 32)
    maps = ak.explain(model, x, method="saliency")
    spec = ak.get_metric(name)
    assert spec.reference and spec.description and spec.kind in ("faithfulness", "robustness", "sanity")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = ak.evaluate(model, x, maps, metrics=[name], method="saliency", options={name: options})[name]
    assert result.scores.shape == (3,)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())
