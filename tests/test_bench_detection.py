"""The detection task: scenes with boxes, torchvision's FCOS on a tiny backbone trained
reproducibly and cached, and a quick bench that explains ``ak.Box`` targets and scores them
on the box (deletion through the matched detection)."""

import dataclasses

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.bench.detector import DetTrainConfig, detection_model, fit
from attribkit.bench.profiles import PROFILES, QUICK_METRICS
from attribkit.bench.runner import BenchConfig, run_bench
from attribkit.bench.scenes import make_scenes
from attribkit.bench.tasks import TASKS, get_task
from attribkit.evaluation.functional import gaussian_blur, pixel_relevance
from attribkit.evaluation.scoring import CLASS_METRICS
from attribkit.targets import Box

torchvision = pytest.importorskip("torchvision")

# two classes, so that a few seconds of training find most patterns with their label
TINY_CONFIG = DetTrainConfig(n_train=384, n_test=64, epochs=5, lr=1e-2, classes=2, width=8)
TINY = dataclasses.replace(get_task("detection"), name="tiny-detection", config=TINY_CONFIG)
MICRO_CONFIG = DetTrainConfig(n_train=64, n_test=16, epochs=1, classes=2, width=8)  # for reproducibility only


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the tiny detector is trained once (about 3 s)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTRIBKIT_CACHE", str(path))
        mp.setitem(TASKS, "tiny-detection", "tests.test_bench_detection:TINY")
        detection_model(TINY_CONFIG)
        yield path


def test_training_is_reproducible_and_cached(cache):
    model, record = detection_model(MICRO_CONFIG)
    assert record["path"].startswith(str(cache))
    again, _ = fit(MICRO_CONFIG)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    loaded, same = detection_model(MICRO_CONFIG)  # from the cache: no training
    assert same == record
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_the_test_accuracy_is_the_top_detections_with_torchvision_box_iou(cache):
    model, record = detection_model(TINY_CONFIG)
    test = make_scenes(TINY_CONFIG.n_test, classes=2, seed=TINY_CONFIG.seed + 10_000)
    hits = 0
    with torch.no_grad():
        for image, box, label in zip(test.images, test.boxes, test.labels):
            found = model([torch.from_numpy(image)])[0]  # a list of one image, torchvision's input
            assert set(found) == {"boxes", "labels", "scores"}
            if len(found["scores"]):
                top = int(found["scores"].argmax())
                iou = float(torchvision.ops.box_iou(torch.from_numpy(box)[None], found["boxes"][top:top + 1]))
                hits += iou > 0.5 and int(found["labels"][top]) == int(label)
    assert record["test_accuracy"] == hits / len(test)
    assert record["test_accuracy"] > 0.5  # learnt: most patterns found with their class


def test_the_task_explains_the_pattern_box(cache):
    data = TINY.data(5, seed=1)
    assert isinstance(data.target, Box) and data.layer == "head.classification_head.conv"
    boxes = data.target.boxes
    for box, mask in zip(boxes, data.masks):  # the box is the evidence mask's rectangle
        ys, xs = mask.nonzero(as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert torch.equal(data.target.box_labels, data.labels)


@pytest.mark.filterwarnings("ignore::attribkit.errors.AttributionWarning")  # a pattern the tiny model misses
def test_a_quick_bench_scores_box_maps_on_the_box_against_random(cache, tmp_path):
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    records = run_bench(BenchConfig(out=tmp_path, task="tiny-detection", methods=["gradcam", "random"],
                                    n_images=8), progress=False, log=lambda s: None)
    scored = {(r["method"], r["metric"]): r for r in records}
    metrics = [m for m in QUICK_METRICS if m not in CLASS_METRICS]
    assert set(scored) == {(m, k) for m in ("gradcam", "random") for k in ("speed", *metrics)}
    assert not [k for k, r in scored.items() if "error" in r]
    assert scored["gradcam", "speed"]["peers"] == {}  # the peers take class indices, not boxes
    rank = {m: scored[m, "relevance_rank_accuracy"]["mean"] for m in ("gradcam", "random")}
    assert rank["gradcam"] > 0.25 > rank["random"] + 0.15  # the box is 3.5 % of the image
    # deletion scores perturbed copies through the Box: a brute-force loop over the steps,
    # each copy scored by pytorch-grad-cam's FasterRCNNBoxScoreTarget
    model, _ = detection_model(TINY_CONFIG)
    data = TINY.data(8)
    x = data.inputs
    relevance = pixel_relevance(ak.explain(model, x, data.target, method="gradcam", layer=data.layer).values,
                                (64, 64))
    steps = PROFILES["quick"]["metric_options"]["deletion_auc"]["steps"]
    blurred = gaussian_blur(x, 5.0)
    aucs = []
    with torch.no_grad():
        for i in range(len(x)):
            peer = FasterRCNNBoxScoreTarget(labels=[int(data.labels[i])], bounding_boxes=data.target.boxes[i:i + 1])
            order = torch.argsort(relevance[i].flatten(), descending=True, stable=True)
            curve = []
            for k in range(steps + 1):
                gone = torch.zeros(64 * 64, dtype=torch.bool)
                gone[order[:round(k / steps * 64 * 64)]] = True
                copy = torch.where(gone.view(1, 64, 64), blurred[i], x[i])
                curve.append(float(peer(model(copy[None])[0])))
            aucs.append(np.trapezoid(curve, dx=1 / steps))
    assert scored["gradcam", "deletion_auc"]["mean"] == pytest.approx(float(np.mean(aucs)), rel=1e-4)
