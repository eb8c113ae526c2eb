"""The Quantus-named metrics against Quantus itself, in the same run, on the same inputs.

A tiny one-channel CNN (so that a Quantus *feature*, an element of the input,
is a pixel), 6 images of 18x18 (not a multiple of the patch sizes, so the
padding of the patch tilings is exercised), random tie-free relevance maps and
a deterministic explain function (the input gradient) shared by both sides.

Deterministic metrics must agree to 1e-4 per image. Stochastic ones (random
subsets, noise draws) cannot share Quantus's NumPy random stream; they are
compared in expectation: the tolerance is a multiple of the spread of
attribkit's own estimate over seeds, measured in the test.

Quantus 0.6 integrates its per-sample curves with ``np.trapz``, which NumPy 2
removed: the tests that need it set ``np.trapz = np.trapezoid`` for their
duration only (``monkeypatch``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.evaluation.base import MetricInput
from attribkit.evaluation.localisation import focus_scores

quantus = pytest.importorskip("quantus")

B, H = 6, 18


class Net(nn.Module):
    """conv (unpadded: Quantus's input-shift model is exact for it) -> ReLU -> conv -> ReLU -> GAP -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).mean((2, 3)))


def gradient(model: nn.Module, inputs, targets) -> torch.Tensor:
    """``(B, H, W)`` input gradient of the target logit (deterministic)."""
    x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs).float()
    x = x.detach().requires_grad_()
    t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets).long()
    out = model(x)
    (grad,) = torch.autograd.grad(out.gather(1, t[:, None]).sum(), x)
    return grad.sum(1)


def quantus_explain(model, inputs, targets, **kwargs) -> np.ndarray:
    return gradient(model, inputs, targets)[:, None].numpy()


@pytest.fixture(scope="module")
def case():
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Net().eval()
    x = torch.rand(B, 1, H, H, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    a = torch.rand(B, H, H, generator=gen) - 0.3  # signed, tie-free
    masks = torch.zeros(B, H, H, dtype=torch.bool)
    for i in range(B):
        masks[i, 2 + i:9 + i, 3:12] = True
    return model, x, y, a, masks


def ours(case, name, relevance=None, **options):
    model, x, y, a, masks = case
    rel = a if relevance is None else relevance
    masks = masks if "ground_truth" in ak.get_metric(name).needs else None
    return ak.evaluate(model, x, rel, y, metrics=[name], masks=masks, explain=gradient,
                       options={name: options})[name].scores.double().numpy()


def theirs(case, metric, relevance=None, **call):
    model, x, y, a, masks = case
    rel = a if relevance is None else relevance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=rel[:, None].numpy(),
                     s_batch=masks[:, None].numpy().astype(float), channel_first=True, device="cpu", **call)
    return out


@pytest.fixture
def trapz(monkeypatch):
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


# ------------------------------------------------------------------ deterministic: 1e-4

def test_pixel_flipping(case, trapz):
    q = theirs(case, quantus.PixelFlipping(features_in_step=4, return_auc_per_sample=True,
                                           disable_warnings=True), softmax=True)
    np.testing.assert_allclose(ours(case, "pixel_flipping", features_in_step=4), q, atol=1e-4)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation(case, order):
    q = np.asarray(theirs(case, quantus.RegionPerturbation(patch_size=4, order=order, regions_evaluation=10,
                                                           disable_warnings=True), softmax=True))
    compat = ours(case, "region_perturbation", patch_size=4, order=order, regions_evaluation=10,
                  quantus_compat=True)
    np.testing.assert_allclose(compat, q.mean(1), atol=1e-4)
    paper = ours(case, "region_perturbation", patch_size=4, order=order, regions_evaluation=10)
    np.testing.assert_allclose(paper, q.sum(1) / 11, atol=1e-4)  # AOPC: the k = 0 term counts


def test_selectivity(case):
    q = np.asarray(theirs(case, quantus.Selectivity(patch_size=4, disable_warnings=True), softmax=True))
    np.testing.assert_allclose(ours(case, "selectivity", patch_size=4), np.trapezoid(q, axis=1), atol=1e-4)


def test_faithfulness_estimate(case):
    q = theirs(case, quantus.FaithfulnessEstimate(features_in_step=9, disable_warnings=True), softmax=False)
    np.testing.assert_allclose(ours(case, "faithfulness_estimate", features_in_step=9), q, atol=1e-4)


def test_monotonicity_quantus_compat(case):
    q = theirs(case, quantus.Monotonicity(features_in_step=9, disable_warnings=True), softmax=True)
    np.testing.assert_allclose(ours(case, "monotonicity", features_in_step=9, quantus_compat=True),
                               np.asarray(q, dtype=float), atol=1e-4)
    assert all(q)  # Quantus's input never changes, so every map passes


def test_monotonicity_follows_the_paper():
    """Pixels really are put back (Quantus's input never changes): with f = 10 x_p - 5 x_q,
    putting q back first lowers f, so the map fails; Quantus's version passes it."""
    from attribkit.evaluation.faithfulness import monotonicity

    def predict(x):
        v = 10 * x[:, 0, 0, 0] - 5 * x[:, 0, 1, 1]
        return torch.stack([v, torch.zeros_like(v)], 1)

    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = x[0, 0, 1, 1] = 1.0
    rel = torch.zeros(1, 3, 3)
    rel[0, 0, 0], rel[0, 1, 1] = 1.0, 0.5
    data = MetricInput(predict=predict, inputs=x, relevance=rel, targets=torch.tensor([0]))
    assert monotonicity(data, features_in_step=1, softmax=False).scores.item() == 0.0
    assert monotonicity(data, features_in_step=1, softmax=False, quantus_compat=True).scores.item() == 1.0
    x[0, 0, 1, 1] = 0.0  # without the negative pixel the curve only rises
    assert monotonicity(data, features_in_step=1, softmax=False).scores.item() == 1.0


def test_monotonicity_correlation_with_a_fixed_baseline(case):
    q = theirs(case, quantus.MonotonicityCorrelation(features_in_step=9, nr_samples=1, perturb_baseline="black",
                                                     disable_warnings=True), softmax=True)
    np.testing.assert_allclose(ours(case, "monotonicity_correlation", features_in_step=9, nr_samples=1,
                                    perturb_baseline="black"), q, atol=1e-4)


def test_sensitivity_n_quantus_compat(case):
    model, x, y, a, masks = case
    metric = quantus.SensitivityN(features_in_step=9, n_max_percentage=0.8, return_aggregate=False,
                                  disable_warnings=True)
    per_step = np.asarray(theirs(case, metric, softmax=True))  # one correlation over the images per step
    result = ak.evaluate(model, x, a, y, metrics=["sensitivity_n"],
                         options={"sensitivity_n": {"features_in_step": 9, "quantus_compat": True}})
    # Quantus takes softmax and output differences in float32 (drops of ~1e-3, so ~1e-4
    # relative rounding), attribkit in float64: measured 1.7e-4 at most, 5e-4 allowed
    np.testing.assert_allclose(result["sensitivity_n"].curves["mean"], per_step, atol=5e-4)
    # Quantus's default return_aggregate=True gives their mean, which every image gets here
    np.testing.assert_allclose(result["sensitivity_n"].scores.numpy(), np.full(B, per_step.mean()), atol=1e-4)


def test_irof_quantus_compat(case, trapz):
    q = theirs(case, quantus.IROF(return_aggregate=False, disable_warnings=True), softmax=True)
    np.testing.assert_allclose(ours(case, "irof", quantus_compat=True), q, atol=1e-4)


def test_sufficiency(case):
    q = theirs(case, quantus.Sufficiency(threshold=0.6, disable_warnings=True), softmax=False)
    np.testing.assert_allclose(ours(case, "sufficiency"), q, atol=1e-4)


@pytest.mark.parametrize("name, cls, options", [
    ("attribution_localisation", "AttributionLocalisation", {}),
    ("top_k_intersection", "TopKIntersection", {"k": 40}),
    ("auc", "AUC", {}),
    ("pointing_game", "PointingGame", {}),
    ("relevance_rank_accuracy", "RelevanceRankAccuracy", {}),
    ("sparseness", "Sparseness", {}),
    ("complexity", "Complexity", {}),
])
def test_localisation_and_complexity(case, name, cls, options):
    q = theirs(case, getattr(quantus, cls)(**options, disable_warnings=True))
    np.testing.assert_allclose(ours(case, name, **options), np.asarray(q, dtype=float), atol=1e-4)


def test_relevance_mass_accuracy_on_positive_maps(case):
    """attribkit counts positive relevance only (Arras et al.); Quantus sums the raw map:
    they agree on non-negative maps."""
    positive = case[3].abs()
    q = theirs(case, quantus.RelevanceMassAccuracy(disable_warnings=True), relevance=positive)
    np.testing.assert_allclose(ours(case, "relevance_mass_accuracy", relevance=positive), q, atol=1e-4)


def test_effective_complexity_quantus_compat(case):
    q = theirs(case, quantus.EffectiveComplexity(eps=0.5, disable_warnings=True))
    np.testing.assert_allclose(ours(case, "effective_complexity", eps=0.5, quantus_compat=True), q, atol=1e-4)


def test_focus_scores(case):
    model, x, y, a, masks = case
    gen = np.random.default_rng(0)
    quadrants = gen.random((B, 4)) < 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.Focus(disable_warnings=True)(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                                                 a_batch=a[:, None].numpy(), custom_batch=list(quadrants),
                                                 channel_first=True, device="cpu")
    ours_ = focus_scores(a / a.abs().flatten(1).amax(1).max(), torch.as_tensor(quadrants))
    np.testing.assert_allclose(ours_.numpy(), q, atol=1e-4)


def test_continuity(case):
    q = theirs(case, quantus.Continuity(nr_steps=7, disable_warnings=True), explain_func=quantus_explain,
               softmax=False, relevance=gradient(case[0], case[1], case[2]))
    ratio = ours(case, "continuity", nr_steps=7, quantus_compat=True,
                 relevance=gradient(case[0], case[1], case[2]))
    np.testing.assert_allclose(ratio, q, rtol=1e-4)


def test_mprt(case):
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.MPRT(return_average_correlation=True, disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=rel[:, None].numpy(),
            explain_func=quantus_explain, channel_first=True, device="cpu")
    np.testing.assert_allclose(ours(case, "mprt", relevance=rel, quantus_compat=True), q, atol=1e-4)
    layers = 3  # conv1, conv2, fc; Quantus's mean also counts the intact model's similarity (1)
    np.testing.assert_allclose(ours(case, "mprt", relevance=rel), (np.asarray(q) * (layers + 1) - 1) / layers,
                               atol=1e-4)


def test_completeness_and_non_sensitivity(case):
    q = theirs(case, quantus.Completeness(disable_warnings=True), softmax=False)
    np.testing.assert_allclose(ours(case, "completeness", normalise=True, quantus_compat=True),
                               np.asarray(q, dtype=float), atol=1e-4)
    q = theirs(case, quantus.NonSensitivity(features_in_step=1, eps=0.3, disable_warnings=True), softmax=True)
    np.testing.assert_allclose(ours(case, "non_sensitivity", features_in_step=1, eps=0.3, quantus_compat=True),
                               q, atol=1e-4)


def test_input_invariance(case):
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantus.InputInvariance(disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=rel[:, None].numpy(),
            explain_func=quantus_explain, channel_first=True, device="cpu")
    np.testing.assert_allclose(ours(case, "input_invariance", relevance=rel, quantus_compat=True),
                               np.asarray(q, dtype=float))
    # the gradient is input-invariant: shifted exactly, every image passes; Quantus leaves
    # pixel (0, 0) unshifted, which fails some (measured: 1 of 6 here, |a - a'| = 1.005e-4)
    assert ours(case, "input_invariance", relevance=rel).tolist() == [1.0] * B


# -------------------------------------------------------------- stochastic: in expectation

def _spread(case, name, seeds, **options):
    runs = np.stack([ours(case, name, seed=s, **options) for s in seeds])
    return runs.mean(0), runs.std(0, ddof=1)


def test_faithfulness_correlation_in_expectation(case, monkeypatch):
    """Quantus and attribkit both average nr_runs random subsets; over 4 seeds of
    attribkit the per-image estimate has a standard deviation s; Quantus's single
    estimate must lie within 5 s (plus the std of the mean) of attribkit's mean."""
    np.random.seed(0)
    q = np.asarray(theirs(case, quantus.FaithfulnessCorrelation(nr_runs=400, subset_size=60,
                                                                disable_warnings=True), softmax=False))
    mean, std = _spread(case, "faithfulness_correlation", range(4), nr_runs=400, subset_size=60)
    assert np.all(np.abs(mean - q) <= 5 * std * np.sqrt(1 + 1 / 4) + 1e-3), (mean, q, std)


@pytest.mark.parametrize("name, cls, options", [
    ("avg_sensitivity", "AvgSensitivity", {"nr_samples": 40}),
    ("max_sensitivity", "MaxSensitivity", {"nr_samples": 40}),
    ("local_lipschitz_estimate", "LocalLipschitzEstimate", {"nr_samples": 40}),
    ("relative_input_stability", "RelativeInputStability", {"nr_samples": 40}),
    ("relative_output_stability", "RelativeOutputStability", {"nr_samples": 40}),
])
def test_robustness_in_expectation(case, name, cls, options):
    """Same noise distributions, independent draws: Quantus's per-image value must lie
    within 5 standard deviations of attribkit's seed-to-seed spread (4 seeds) of
    attribkit's mean; a relative floor of 2% covers estimates that barely vary."""
    model, x, y, a, masks = case
    rel = gradient(model, x, y)
    np.random.seed(0)
    kw = {"return_nan_when_prediction_changes": False} if "stability" in name else {}
    q = np.asarray(theirs(case, getattr(quantus, cls)(**options, **kw, disable_warnings=True),
                          explain_func=quantus_explain, relevance=rel, softmax=False), dtype=float)
    if name == "local_lipschitz_estimate":
        extra = {"quantus_compat": True}
    else:
        extra = {}
    mean, std = _spread(case, name, range(4), relevance=rel, **options, **kw, **extra)
    tol = 5 * std * np.sqrt(1 + 1 / 4) + 0.02 * np.abs(mean)
    assert np.all(np.abs(mean - q) <= tol), (name, mean, q, std)


def test_road_agrees_at_most_points(case):
    """Quantus solves the imputation exactly (sparse solve), attribkit by Jacobi sweeps, and
    both add their own noise: the per-image share of kept predictions must agree within
    0.15 (the 0/1 curve may differ at a few of the 50 percentages)."""
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.ROAD(disable_warnings=True)
        model, x, y, a, masks = case
        metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(),
               channel_first=True, device="cpu")
    curve_q = np.array(list(metric.evaluation_scores.values()))  # per percentage, mean over images
    result = ak.evaluate(model, x, a, y, metrics=["road"],
                         options={"road": {"percentages": tuple(range(1, 100, 2))}})["road"]
    np.testing.assert_allclose(result.curves["mean"], curve_q, atol=0.34)  # 2 of 6 images at a point
    assert abs(np.mean(result.curves["mean"]) - curve_q.mean()) < 0.15
