"""ak.evaluate trusts no input (issue 23): every registered metric over careless inputs,
the undefined scores (NaN and a MetricWarning), defaults that scale with the image, and
what each metric costs in forwards (issue 28).

The sweep takes the metric list from the registry, so a new metric (a plugin's too)
inherits it; its cases are those of ``benchmarks/metric_input_sweep.py``.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import attribkit as ak
from attribkit.errors import AttribkitError, InputError, InvalidOptionError, MetricWarning, TargetError
from attribkit.testing import TinyCNN, assert_model_untouched
from benchmarks.metric_input_sweep import DEGENERATE, _model, cases, run_case

#: what each case must end in: a named error, a result with a MetricWarning, or (for a
#: degenerate input a metric defines a value for) a finite result
ALLOWED = {**{case: {"named"} for case in ("map_hw", "map_batch", "map_nan", "target_range",
                                            "target_negative", "target_length", "mask_shape", "image_1px")},
           "mask_unused": {"warned"},
           **{case: {"named", "warned", "finite"} for case in DEGENERATE if case != "image_1px"}}


@pytest.mark.parametrize("name", [spec.name for spec in ak.metrics() if "tokens" not in spec.needs])
def test_every_metric_over_bad_inputs(name):  # token metrics: tests/test_token_metrics.py
    spec = ak.get_metric(name)
    model = _model()
    for case, kwargs in cases("ground_truth" in spec.needs):
        with assert_model_untouched(model):
            outcome, detail = run_case(model, spec, kwargs)
        assert outcome in ALLOWED[case], (case, outcome, detail)
        if outcome == "named":
            assert name in detail, detail  # the message names the metric
            assert "\n" not in detail


def _x(b=2, side=16, seed=0):
    return torch.rand(b, 3, side, side, generator=torch.Generator().manual_seed(seed))


def test_errors_name_the_argument_and_the_shapes():
    model = TinyCNN().eval()
    x = _x()
    with pytest.raises(InputError, match=r"19x14 do not fit images of 16x16.*\(2, 1, 19, 14\).*deletion_auc"):
        ak.evaluate(model, x, torch.rand(2, 1, 19, 14), torch.tensor([1, 2]), metrics=["deletion_auc"])
    with pytest.raises(InputError, match=r"3 maps for 2 images.*complexity"):
        ak.evaluate(model, x, torch.rand(3, 16, 16), torch.tensor([1, 2]), metrics=["complexity"])
    with pytest.raises(TargetError, match=r"target 7 is out of range .* 5 outputs.*road") as err:
        ak.evaluate(model, x, torch.rand(2, 16, 16), torch.tensor([1, 7]), metrics=["road"])
    assert isinstance(err.value, ValueError)
    with pytest.raises(TargetError, match=r"target -1 is out of range"):
        ak.evaluate(model, x, torch.rand(2, 16, 16), -1, metrics=["road"])
    with pytest.raises(TargetError, match=r"3 targets for a batch of 2"):
        ak.evaluate(model, x, torch.rand(2, 16, 16), [1, 2, 3], metrics=["road"])
    with pytest.raises(InputError, match=r"masks must be \(B, H, W\) = \(2, 16, 16\).*\(2, 12, 12\).*auc"):
        ak.evaluate(model, x, torch.rand(2, 16, 16), [1, 2], metrics=["auc"], masks=torch.ones(2, 12, 12))
    with pytest.raises(InputError, match=r"bool or 0/1"):
        ak.evaluate(model, x, torch.rand(2, 16, 16), [1, 2], metrics=["auc"], masks=torch.full((2, 16, 16), 0.5))
    with pytest.raises(InputError, match=r"1x1 pixel"):
        ak.evaluate(model, _x(side=1), torch.rand(2, 1, 1), [1, 2], metrics=["sparseness"])


def test_checks_run_before_any_forward():
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return torch.zeros(len(batch), 5)

    with pytest.raises(InputError):
        ak.evaluate(predict, _x(), torch.rand(2, 1, 19, 14), [1, 2], metrics=["deletion_auc"])
    with pytest.raises(TargetError):
        ak.evaluate(predict, _x(), torch.rand(2, 16, 16), [1, 7], metrics=["deletion_auc"])
    assert calls == [1]  # the target's range is read from one image's scores, nothing more


def test_maps_accepted_in_three_layouts_and_as_layer_maps():
    model = TinyCNN().eval()
    x = _x()
    gen = torch.Generator().manual_seed(3)
    per_channel = torch.rand(2, 3, 16, 16, generator=gen)
    small = torch.rand(2, 1, 4, 4, generator=gen)
    by_hand = torch.nn.functional.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]

    def score(rel):
        return ak.evaluate(model, x, rel, [1, 2], metrics=["complexity"])["complexity"].scores

    summed = per_channel.sum(1)
    torch.testing.assert_close(score(per_channel), score(summed))
    torch.testing.assert_close(score(summed[:, None]), score(summed))
    torch.testing.assert_close(score(small), score(by_hand))
    with pytest.raises(InputError, match="2 channels"):
        score(torch.rand(2, 2, 16, 16))


def test_undefined_scores_are_nan_with_a_warning_naming_metric_and_images():
    model = TinyCNN().eval()
    x = _x()
    rel = torch.rand(2, 16, 16)
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 2:8, 2:8] = True  # image 1: an empty mask
    with pytest.warns(MetricWarning, match=r"'relevance_rank_accuracy' is undefined \(NaN\) for image\(s\) 1: "
                                           r"its mask is empty \(1\)"):
        scores = ak.evaluate(model, x, rel, [1, 2], metrics=["relevance_rank_accuracy"],
                             masks=masks)["relevance_rank_accuracy"].scores
    top = rel[0].flatten().argsort(descending=True)[:36]  # brute force: the top-|mask| pixels of image 0
    assert scores[1].isnan()
    assert scores[0].item() == pytest.approx(masks[0].flatten()[top].float().mean().item())

    rel[0] = 0.25  # image 0: a constant map; a metric that ranks pixels has no order
    with pytest.warns(MetricWarning, match=r"'deletion_auc' is undefined \(NaN\) for image\(s\) 0: its map is constant"):
        scores = ak.evaluate(model, x, rel, [1, 2], metrics=["deletion_auc"],
                             options={"deletion_auc": {"steps": 4}})["deletion_auc"].scores
    assert scores[0].isnan() and scores[1].isfinite()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sparseness is defined for a constant map: no warning
        scores = ak.evaluate(model, x, rel, [1, 2], metrics=["sparseness"])["sparseness"].scores
    assert scores[0].item() == pytest.approx(0.0, abs=1e-6)


def test_masks_no_metric_reads_warn():
    model = TinyCNN().eval()
    with pytest.warns(MetricWarning, match="masks= is read by none of the metrics sparseness"):
        ak.evaluate(model, _x(), torch.rand(2, 16, 16), [1, 2], metrics=["sparseness"],
                    masks=torch.ones(2, 16, 16, dtype=torch.bool))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read by one of them: fine for all
        ak.evaluate(model, _x(), torch.rand(2, 16, 16), [1, 2], metrics=["sparseness", "auc"],
                    masks=torch.rand(2, 16, 16) > 0.5)


def test_pixel_count_defaults_scale_and_bad_values_are_named():
    model = TinyCNN().eval()
    x = _x(side=16)
    rel = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(5))
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, :8] = True
    score = ak.evaluate(model, x, rel, [1, 2], metrics=["top_k_intersection"], masks=masks,
                        options={"top_k_intersection": {"normalise": False}})["top_k_intersection"].scores
    k = round(256 * 1000 / 224**2)  # Quantus's 1000 at 224x224, scaled: 5 at 16x16
    top = rel.flatten(1).argsort(1, descending=True)[:, :k]
    expected = masks.flatten(1).gather(1, top).float().mean(1)
    torch.testing.assert_close(score, expected)
    for metric, option, value in [("top_k_intersection", "k", 1000), ("faithfulness_correlation", "subset_size", 256),
                                  ("region_perturbation", "patch_size", 0), ("pixel_flipping", "features_in_step", 0)]:
        with pytest.raises(InvalidOptionError, match=f"option '{option}'") as err:
            ak.evaluate(model, x, rel, [1, 2], metrics=[metric], masks=masks if metric.startswith("top") else None,
                        options={metric: {option: value}})
        assert isinstance(err.value, ValueError)


class Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = TinyCNN().eval()
        self.rows = [0]

    def forward(self, x):
        self.rows[0] += len(x)
        return self.inner(x)


@pytest.mark.parametrize("name, per_image", [("region_perturbation", 65), ("selectivity", 64), ("infidelity", 65),
                                             ("deletion_auc", 33), ("pixel_flipping", 32)])
def test_removal_metrics_cost_the_same_forwards_at_any_size(name, per_image):
    """An 8x8 grid of patches, or 32 steps, at 16 and at 48 px (counted, minus the target check's one)."""
    for side in (16, 48):
        model = Counting().eval()
        ak.evaluate(model, _x(side=side), torch.rand(2, side, side), [1, 2], metrics=[name])
        assert model.rows[0] - 1 == 2 * per_image, (name, side)


def test_default_grid_is_an_8x8_tiling():
    model = TinyCNN().eval()
    x, rel = _x(side=20), torch.rand(2, 20, 20, generator=torch.Generator().manual_seed(2))
    for name in ("region_perturbation", "selectivity", "infidelity"):
        default = ak.evaluate(model, x, rel, [1, 2], metrics=[name])[name].scores
        option = "perturb_patch_sizes" if name == "infidelity" else "patch_size"
        side = math.ceil(20 / 8)
        explicit = ak.evaluate(model, x, rel, [1, 2], metrics=[name],
                               options={name: {option: [side] if name == "infidelity" else side}})[name].scores
        torch.testing.assert_close(default, explicit)


def test_every_metric_row_says_what_it_costs():
    from attribkit.tables import metric_rows

    rows = metric_rows()
    assert rows and all(isinstance(r["forwards"], str) and r["forwards"] for r in rows)
    assert {r["name"]: r["forwards"] for r in rows}["sparseness"] == "0"


def test_reexplaining_metric_on_a_batch_of_one():
    pytest.importorskip("captum")
    model = TinyCNN().eval()
    x = _x(b=1)
    maps = ak.explain(model, x, method="saliency")
    out = ak.evaluate(model, x, maps, metrics=["captum.sensitivity_max"], method="saliency",
                      options={"captum.sensitivity_max": {"n_perturb_samples": 2}})
    assert out["captum.sensitivity_max"].scores.shape == (1,)


def test_named_errors_leave_the_model_untouched():
    model = TinyCNN()
    model.train()
    with assert_model_untouched(model), pytest.raises(AttribkitError):
        ak.evaluate(model, _x(), torch.rand(2, 16, 16), [1, 9], metrics=["deletion_auc"])
