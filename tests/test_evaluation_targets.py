"""ak.evaluate with target objects (issue 24): faithfulness metrics score perturbed copies
through Target.score (checked against brute-force loops written here), Class(c) is the
int target, class-comparing metrics refuse other targets, rows of several per image are
scored on their own image, and boxes become evidence masks (hand-computed values)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import InputError, InvalidOptionError, TargetError
from attribkit.evaluation import functional as M
from attribkit.evaluation.localisation import box_masks

H = W = 16


class TinySegmenter(nn.Module):
    """A 3-class segmentation net returning a dict, as torchvision's FCN does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.conv(x)}


class FakeDetector(nn.Module):
    """Two detections per image built from the input (differentiable): box 0 of label 1
    slides down-right with the brightness of the top-left 4x4 corner; box 1 of label 2
    is fixed; scores are sigmoids of the mean brightness inside each box."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = []
        for img in x:
            m = img.mean(0)
            s = 4 * m[:4, :4].mean()
            b0 = torch.stack([2 + s, 2 + s, 10 + s, 10 + s])
            b1 = torch.tensor([4.0, 4.0, 14.0, 14.0])
            scores = torch.sigmoid(self.w * torch.stack([m[2:10, 2:10].mean(), m[4:14, 4:14].mean()]) - 1)
            out.append({"boxes": torch.stack([b0, b1]), "labels": torch.tensor([1, 2]), "scores": scores})
        return out


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def box_score(detector: nn.Module, image: torch.Tensor, ref: list[float], label: int) -> float:
    """pytorch-grad-cam's FasterRCNNBoxScoreTarget by hand: the highest-IoU detection,
    IoU + score if its label matches and IoU > 0.5, else 0."""
    with torch.no_grad():
        d = detector(image[None])[0]
    ious = [iou(ref, b.tolist()) for b in d["boxes"]]
    best = max(range(len(ious)), key=lambda j: ious[j])
    if ious[best] > 0.5 and int(d["labels"][best]) == label:
        return ious[best] + float(d["scores"][best])
    return 0.0


def region_score(net: nn.Module, image: torch.Tensor, cls: int, mask: torch.Tensor) -> float:
    with torch.no_grad():
        logits = net(image[None])["out"][0, cls]
    return float(sum(logits[y, x] for y in range(H) for x in range(W) if mask[y, x]))


def brute_curve(score, image: torch.Tensor, relevance: torch.Tensor, steps: int, start: torch.Tensor,
                insert: bool) -> list[float]:
    """Deletion (``insert=False``: the top pixels replaced by ``start``) or insertion (the
    top pixels of ``image`` put into ``start``), one copy per step, pixel by pixel."""
    flat = relevance.flatten().tolist()
    order = sorted(range(H * W), key=lambda p: (-flat[p], p))
    curve = []
    for k in range(steps + 1):
        top = set(order[:round(k * H * W / steps)])
        copy = (start if insert else image).clone()
        for p in top:
            y, x = divmod(p, W)
            copy[:, y, x] = image[:, y, x] if insert else start[:, y, x]
        curve.append(score(copy))
    return curve


def auc(curve: list[float]) -> float:
    n = len(curve) - 1
    return sum((curve[k] + curve[k + 1]) / 2 for k in range(n)) / n


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, H, W) * 0.3


def test_region_deletion_and_insertion_equal_a_brute_force_loop(images):
    net = TinySegmenter().eval()
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[4:12, 3:9] = True
    target = ak.Region([1, 2], mask)  # class 1 in image 0, class 2 in image 1
    torch.manual_seed(2)
    rel = torch.rand(2, H, W)
    steps = 4
    got = ak.evaluate(net, images, rel, target, metrics=("deletion_auc", "insertion_auc"), batch_size=3,
                      options={"deletion_auc": {"steps": steps, "baseline": 0.0},
                               "insertion_auc": {"steps": steps, "blur_sigma": 2.0}})
    blurred = M.gaussian_blur(images, 2.0)  # insertion's start image
    for i in range(2):
        score = lambda c: region_score(net, c, 1 + i, mask)  # noqa: E731
        deletion = brute_curve(score, images[i], rel[i], steps, torch.zeros_like(images[i]), insert=False)
        insertion = brute_curve(score, images[i], rel[i], steps, blurred[i], insert=True)
        assert float(got["deletion_auc"].scores[i]) == pytest.approx(auc(deletion), rel=1e-5, abs=1e-5)
        assert float(got["insertion_auc"].scores[i]) == pytest.approx(auc(insertion), rel=1e-5, abs=1e-5)
    assert got["deletion_auc"].curves["mean"][0] == pytest.approx(
        sum(region_score(net, images[i], 1 + i, mask) for i in range(2)) / 2, rel=1e-5)


def test_region_from_the_attribution_and_as_a_callable(images):
    net = TinySegmenter().eval()
    res = ak.explain(net, images, ak.Region(2), method="saliency")
    assert isinstance(res.meta["target"], ak.Region)
    opts = {"deletion_auc": {"steps": 4, "baseline": 0.0}}
    from_meta = ak.evaluate(net, images, res, metrics=("deletion_auc",), options=opts)
    as_callable = ak.evaluate(net, images, res, lambda out: out["out"][:, 2].sum((1, 2)),
                              metrics=("deletion_auc",), options=opts)
    full = torch.ones(H, W, dtype=torch.bool)
    score = lambda c: region_score(net, c, 2, full)  # noqa: E731
    for i in range(2):
        rel = res.values[i].sum(0)
        expected = auc(brute_curve(score, images[i], rel, 4, torch.zeros_like(images[i]), insert=False))
        assert float(from_meta["deletion_auc"].scores[i]) == pytest.approx(expected, rel=1e-4, abs=1e-4)
    torch.testing.assert_close(from_meta["deletion_auc"].scores, as_callable["deletion_auc"].scores)


def test_box_deletion_on_a_detector_equals_a_brute_force_loop(images):
    det = FakeDetector().eval()
    ref = [2.0, 2.0, 10.0, 10.0]
    res = ak.explain(det, images, ak.Box(torch.tensor(ref), 1), method="saliency")
    rel = res.values.abs().sum(1)
    got = ak.evaluate(det, images, res, metrics=("deletion_auc", "insertion_auc"), batch_size=4,
                      options={"deletion_auc": {"steps": 8, "baseline": 1.0},
                               "insertion_auc": {"steps": 8, "blur_sigma": 2.0}})
    blurred = M.gaussian_blur(images, 2.0)
    score = lambda c: box_score(det, c, ref, 1)  # noqa: E731
    zeros_seen = False  # white pixels in the corner slide box 0 away: no match, score 0
    for i in range(2):
        deletion = brute_curve(score, images[i], rel[i], 8, torch.ones_like(images[i]), insert=False)
        insertion = brute_curve(score, images[i], rel[i], 8, blurred[i], insert=True)
        zeros_seen |= 0.0 in deletion + insertion
        assert float(got["deletion_auc"].scores[i]) == pytest.approx(auc(deletion), rel=1e-5, abs=1e-6)
        assert float(got["insertion_auc"].scores[i]) == pytest.approx(auc(insertion), rel=1e-5, abs=1e-6)
    assert zeros_seen


def test_several_boxes_per_image_rows_scored_on_their_image(images):
    det = FakeDetector().eval()
    refs = [torch.tensor([[2.0, 2.0, 10.0, 10.0], [4.0, 4.0, 14.0, 14.0]]), torch.tensor([[3.0, 2.0, 11.0, 10.0]])]
    labels = [torch.tensor([1, 2]), torch.tensor([1])]
    res = ak.explain(det, images, ak.Box(refs, labels), method="saliency")
    assert res.meta["image_index"].tolist() == [0, 0, 1]
    got = ak.evaluate(det, images, res, metrics=("deletion_auc", "pointing_game"), boxes=refs,
                      options={"deletion_auc": {"steps": 4, "baseline": 0.0}})
    rows = [(0, refs[0][0], 1), (0, refs[0][1], 2), (1, refs[1][0], 1)]
    for r, (i, box, label) in enumerate(rows):
        rel = res.values[r].sum(0)
        score = lambda c: box_score(det, c, box.tolist(), label)  # noqa: E731
        expected = auc(brute_curve(score, images[i], rel, 4, torch.zeros_like(images[i]), insert=False))
        assert float(got["deletion_auc"].scores[r]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        y, x = divmod(int(rel.flatten().argmax()), W)
        inside = box[0] <= x + 0.5 < box[2] and box[1] <= y + 0.5 < box[3]
        assert float(got["pointing_game"].scores[r]) == float(inside)
    per_image = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 16.0, 16.0]])  # one box per image, not per row
    got = ak.evaluate(det, images, res, metrics=("pointing_game",), boxes=per_image)
    for r, i in enumerate([0, 0, 1]):
        y, x = divmod(int(res.values[r].sum(0).flatten().argmax()), W)
        assert float(got["pointing_game"].scores[r]) == float(y // 8 == i and x // 8 == i)
    with pytest.raises(InputError, match="image_index"):
        ak.evaluate(det, images[:1], res, metrics=("deletion_auc",))


def test_class_object_equals_the_int_target_bit_for_bit():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 5)).eval()
    x, rel = torch.rand(3, 3, 8, 8), torch.rand(3, 8, 8)
    metrics = ("deletion_auc", "insertion_auc", "pixel_flipping", "faithfulness_correlation", "road_morf", "road")
    opts = {"faithfulness_correlation": {"nr_runs": 8}}
    as_int = ak.evaluate(model, x, rel, 3, metrics=metrics, options=opts, batch_size=5)
    as_object = ak.evaluate(model, x, rel, ak.Class(3), metrics=metrics, options=opts, batch_size=5)
    per_image = ak.evaluate(model, x, rel, ak.Class([3, 1, 0]), metrics=metrics, options=opts, batch_size=5)
    as_ints = ak.evaluate(model, x, rel, [3, 1, 0], metrics=metrics, options=opts, batch_size=5)
    for name in metrics:
        assert torch.equal(as_int[name].scores, as_object[name].scores), name
        assert torch.equal(as_ints[name].scores, per_image[name].scores), name
    assert not torch.equal(as_int["deletion_auc"].scores, as_ints["deletion_auc"].scores)


@pytest.mark.parametrize("metric, options", [("road", {}), ("sufficiency", {}), ("random_logit", {}),
                                             ("max_sensitivity", {"return_nan_when_prediction_changes": True})])
def test_metrics_that_compare_classes_refuse_other_targets(images, metric, options):
    net = TinySegmenter().eval()
    with pytest.raises(TargetError, match=metric):
        ak.evaluate(net, images, torch.rand(2, H, W), ak.Region(1), metrics=(metric,),
                    options={metric: options}, method="saliency")
    with pytest.raises(TargetError, match="callable"):
        ak.evaluate(net, images, torch.rand(2, H, W), lambda out: out["out"].sum((1, 2, 3)),
                    metrics=(metric,), options={metric: options}, method="saliency")


def test_a_target_that_does_not_read_the_output_is_refused_before_any_metric(images):
    with pytest.raises(TargetError, match="Box reads"):
        ak.evaluate(TinySegmenter().eval(), images, torch.rand(2, H, W), ak.Box([0, 0, 4, 4], 1))


def test_box_masks_by_hand():
    m = box_masks(torch.tensor([1.0, 1.0, 3.0, 3.0]), 4, 4)[0]
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[1:3, 1:3] = True
    assert torch.equal(m, expected)
    # centres 0.5, 1.5, 2.5 of columns lie in [0.4, 2.6); centres 0.5, 1.5 of rows in [0.4, 1.6)
    m = box_masks([torch.tensor([[0.4, 0.4, 2.6, 1.6]]), torch.zeros(0, 4)], 3, 4)
    assert m.shape == (1, 3, 4)
    assert m[0].int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    with pytest.raises(InputError, match="x2 > x1"):
        box_masks(torch.tensor([3.0, 1.0, 1.0, 3.0]), 4, 4)


def test_pointing_game_and_energy_on_boxes_by_hand():
    # a 4x4 map; the box [0, 0, 2, 2] covers the top-left 2x2 pixels
    rel = torch.tensor([[[1.0, 2.0, 0.0, -5.0],
                         [0.0, 1.0, 0.0, 0.0],
                         [0.0, 0.0, 4.0, 0.0],
                         [0.0, 0.0, 0.0, 0.0]]]).repeat(2, 1, 1)
    rel[1, 0, 1] = 9.0  # image 1: the peak inside the box
    x = torch.rand(2, 1, 4, 4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    got = ak.evaluate(model, x, rel, 0, metrics=("pointing_game", "relevance_mass_accuracy"),
                      boxes=torch.tensor([0.0, 0.0, 2.0, 2.0]).expand(2, 4))
    assert got["pointing_game"].scores.tolist() == [0.0, 1.0]
    # positive energy inside / all positive energy: (1 + 2 + 1) / (1 + 2 + 1 + 4); (1 + 9 + 1) / 15
    assert got["relevance_mass_accuracy"].scores.tolist() == pytest.approx([4 / 8, 11 / 15])
    with pytest.raises(InvalidOptionError, match="not both"):
        ak.evaluate(model, x, rel, 0, metrics=("pointing_game",), boxes=torch.tensor([0, 0, 2, 2]),
                    masks=torch.ones(2, 4, 4, dtype=torch.bool))


def test_labels_rows_score_their_label_sigmoid_on_their_image():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 5)).eval()
    x = torch.rand(2, 3, H, W)
    res = ak.explain(model, x, ak.Labels([0, 3]), method="saliency")
    got = ak.evaluate(model, x, res, metrics=("deletion_auc",), options={"deletion_auc": {"steps": 4, "baseline": 0.0}})
    for r, (i, label) in enumerate([(0, 0), (0, 3), (1, 0), (1, 3)]):
        def score(c: torch.Tensor, label: int = label) -> float:
            with torch.no_grad():
                return float(torch.sigmoid(model(c[None])[0, label]))
        expected = auc(brute_curve(score, x[i], res.values[r].sum(0), 4, torch.zeros_like(x[i]), insert=False))
        assert float(got["deletion_auc"].scores[r]) == pytest.approx(expected, rel=1e-5)
    # the same target given with bare maps expands the same way; one that expands otherwise is refused
    again = ak.evaluate(model, x, res.values, ak.Labels([0, 3]), metrics=("deletion_auc",),
                        options={"deletion_auc": {"steps": 4, "baseline": 0.0}})
    assert torch.equal(again["deletion_auc"].scores, got["deletion_auc"].scores)
    with pytest.raises(TargetError, match="image_index"):
        ak.evaluate(model, x, res, ak.Labels([0, 3, 4]), metrics=("deletion_auc",))


def test_metrics_that_re_explain_pass_each_copy_its_image_target(images):
    net = TinySegmenter().eval()
    mask = torch.zeros(2, H, W)
    mask[0, :4, :4], mask[1, 8:, 8:] = 1, 1
    seen = []

    def explain(model, inputs, targets):
        seen.append((len(inputs), targets.classes.tolist(), targets.mask.flatten(1).argmax(1).tolist()))
        return torch.rand(len(inputs), H, W)

    ak.evaluate(net, images, torch.rand(2, H, W), ak.Region([1, 2], mask), metrics=("max_sensitivity",),
                options={"max_sensitivity": {"nr_samples": 3}}, explain=explain, batch_size=4)
    # 2 images x 3 noisy copies, 4 rows per call: image 0's copies carry class 1 and its mask
    assert seen == [(4, [1, 1, 1, 2], [0, 0, 0, 8 * W + 8]), (2, [2, 2], [8 * W + 8] * 2)]
