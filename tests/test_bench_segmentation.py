"""The segmentation task: scenes with per-pixel classes, a small FCN trained reproducibly and
cached, and a quick bench that explains ``ak.Region`` targets and scores them on the box."""

import dataclasses

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.bench.profiles import PROFILES, QUICK_METRICS
from attribkit.bench.runner import BenchConfig, run_bench
from attribkit.bench.scenes import make_scenes
from attribkit.bench.segmenter import SegTrainConfig, fit, segmentation_model
from attribkit.bench.synthetic import TEMPLATES, make_dataset
from attribkit.bench.tasks import TASKS, get_task
from attribkit.evaluation.functional import gaussian_blur, pixel_relevance
from attribkit.evaluation.scoring import CLASS_METRICS
from attribkit.targets import Region

TINY_CONFIG = SegTrainConfig(n_train=128, n_test=32, epochs=1, batch=32, classes=2, width=8)
TINY = dataclasses.replace(get_task("segmentation"), name="tiny-segmentation", config=TINY_CONFIG)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the tiny FCN is trained once."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTRIBKIT_CACHE", str(path))
        mp.setitem(TASKS, "tiny-segmentation", "tests.test_bench_segmentation:TINY")
        yield path


def test_scenes_label_the_pattern_pixels_and_box_them():
    scenes = make_scenes(6, seed=4)
    plain = make_dataset(6, seed=4)
    assert np.array_equal(scenes.images, plain.images) and np.array_equal(scenes.masks, plain.masks)
    assert scenes.class_names[0] == "background" and scenes.class_names[1:] == plain.class_names
    for i in range(6):
        ys, xs = np.nonzero(scenes.masks[i])
        assert scenes.boxes[i].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        labelled = scenes.segments[i] > 0
        assert set(np.unique(scenes.segments[i])) == {0, plain.labels[i] + 1} == {0, scenes.labels[i]}
        assert not (labelled & ~scenes.masks[i]).any()  # inside the box only
        assert labelled.sum() == TEMPLATES[plain.class_names[plain.labels[i]]].sum()
        colours = scenes.images[i][:, labelled]  # (3, pattern pixels): the pattern's one colour
        assert np.allclose(colours, colours[:, :1])


def test_training_is_reproducible_and_cached(cache):
    model, record = segmentation_model(TINY_CONFIG)
    assert record["path"].startswith(str(cache)) and 0 <= record["test_accuracy"] <= 1
    again, _ = fit(TINY_CONFIG)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    loaded, same = segmentation_model(TINY_CONFIG)  # from the cache: no training
    assert same == record and torch.equal(loaded.classifier.weight, model.classifier.weight)
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, TINY_CONFIG.classes + 1, 64, 64)


def test_the_task_explains_regions_in_the_pattern_box(cache):
    data = TINY.data(5, seed=1)
    assert isinstance(data.target, Region) and data.layer == "features"
    assert torch.equal(data.target.classes, data.labels) and torch.equal(data.target.mask.bool(), data.masks)
    assert int(data.labels.min()) >= 1  # the pattern classes, not the background


def test_a_quick_bench_scores_region_maps_on_the_box_against_random(cache, tmp_path):
    records = run_bench(BenchConfig(out=tmp_path, task="tiny-segmentation", methods=["saliency", "gradcam", "random"],
                                    n_images=8), progress=False, log=lambda s: None)
    scored = {(r["method"], r["metric"]): r for r in records}
    metrics = [m for m in QUICK_METRICS if m not in CLASS_METRICS]  # random_logit needs a classifier
    assert "random_logit" not in metrics and len(metrics) == len(QUICK_METRICS) - 1
    assert set(scored) == {(m, k) for m in ("saliency", "gradcam", "random") for k in ("speed", *metrics)}
    assert not [k for k, r in scored.items() if "error" in r]
    # the per-image box reaches the method (through the Region) and the metric: the gradient
    # of the box's logits points into the box (even barely trained), a random map does not
    rank = {m: scored[m, "relevance_rank_accuracy"]["mean"] for m in ("saliency", "random")}
    assert rank["saliency"] > 0.25 > rank["random"] + 0.15  # the box is 3.5 % of the image
    # deletion scores perturbed copies through the Region: a brute-force loop over the steps
    model, _ = segmentation_model(TINY_CONFIG)
    data = TINY.data(8)
    x, labels, masks = data.inputs, data.labels, data.masks
    relevance = pixel_relevance(ak.explain(model, x, data.target, method="saliency").values, (64, 64))
    steps = PROFILES["quick"]["metric_options"]["deletion_auc"]["steps"]
    blurred = gaussian_blur(x, 5.0)
    aucs = []
    with torch.no_grad():
        for i in range(len(x)):
            order = torch.argsort(relevance[i].flatten(), descending=True, stable=True)
            curve = []
            for k in range(steps + 1):
                gone = torch.zeros(64 * 64, dtype=torch.bool)
                gone[order[:round(k / steps * 64 * 64)]] = True
                copy = torch.where(gone.view(1, 64, 64), blurred[i], x[i])
                curve.append(float(model(copy[None])[0, labels[i]][masks[i]].sum()))
            aucs.append(np.trapezoid(curve, dx=1 / steps))
    assert scored["saliency", "deletion_auc"]["mean"] == pytest.approx(float(np.mean(aucs)), rel=1e-4)
