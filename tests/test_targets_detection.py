"""Detection through the same ``explain``: ``ak.Box`` on torchvision's detectors.

References: pytorch-grad-cam's ``FasterRCNNBoxScoreTarget`` (Grad-CAM, LayerCAM on the
same model and layer), ``torch.autograd.grad`` of the score written out here, and
D-RISE's similarity (Petsiuk et al. 2021) computed by hand on hand-made outputs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import AttributionWarning, TargetError
from attribkit.testing import TinyCNN, assert_model_untouched, forward_rows

tvd = pytest.importorskip("torchvision.models.detection")
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.ops import box_iou as tv_box_iou  # noqa: E402


class TinyBackbone(nn.Module):
    """Two strided convolutions: a (B, 32, H/4, W/4) feature map, ``out_channels`` set."""

    def __init__(self) -> None:
        super().__init__()
        self.out_channels = 32
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


SMALL = {"min_size": 64, "max_size": 64}


def _detector(family: str) -> nn.Module:
    torch.manual_seed(0)
    if family == "fasterrcnn":
        return tvd.fasterrcnn_mobilenet_v3_large_320_fpn(
            num_classes=3, weights=None, weights_backbone=None, box_score_thresh=0.0, **SMALL).eval()
    if family == "retinanet":
        anchors = AnchorGenerator(((16, 32),), ((0.5, 1.0, 2.0),))
        return tvd.RetinaNet(TinyBackbone(), 3, anchor_generator=anchors, score_thresh=0.0, **SMALL).eval()
    if family == "fcos":
        anchors = AnchorGenerator(((8,),), ((1.0,),))
        return tvd.FCOS(TinyBackbone(), 3, anchor_generator=anchors, score_thresh=0.0, **SMALL).eval()
    return tvd.ssdlite320_mobilenet_v3_large(num_classes=3, weights=None, weights_backbone=None,
                                             score_thresh=0.0).eval()


@pytest.fixture(scope="module")
def frcnn() -> nn.Module:
    """The brief's model at its own input size (320): for the peer comparisons."""
    torch.manual_seed(0)
    return tvd.fasterrcnn_mobilenet_v3_large_320_fpn(
        num_classes=3, weights=None, weights_backbone=None, box_score_thresh=0.0).eval()


def _own_box(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first non-degenerate detection of each image: ``(B, 4)`` boxes, ``(B,)`` labels."""
    with torch.no_grad():
        out = model(x)
    picked = [int(((o["boxes"][:, 2] > o["boxes"][:, 0] + 1) & (o["boxes"][:, 3] > o["boxes"][:, 1] + 1))
                  .nonzero()[0]) for o in out]
    return (torch.stack([o["boxes"][i] for o, i in zip(out, picked)]),
            torch.stack([o["labels"][i] for o, i in zip(out, picked)]))


def _hand_score(output: dict, box: torch.Tensor, label: int) -> torch.Tensor:
    """pytorch-grad-cam's box score written out: IoU + score of the highest-IoU detection
    when its label matches and IoU > 0.5."""
    ious = tv_box_iou(box[None], output["boxes"])[0]
    j = int(ious.argmax())
    if ious[j] > 0.5 and int(output["labels"][j]) == label:
        return ious[j] + output["scores"][j]
    return output["scores"].sum() * 0


# --- 1. equal to pytorch-grad-cam and to autograd ---------------------------------------

@pytest.mark.parametrize("method,peer", [("gradcam", "GradCAM"), ("layercam", "LayerCAM")])
def test_cam_equals_pytorch_grad_cam_box_score(frcnn, method, peer):
    """Same model, same layer (``backbone.body.13``: a plain (B, C, h, w) stage), same box
    score. pytorch-grad-cam returns ReLU -> min-max scaled -> cv2-resized maps; ours is the
    ReLU'd map at layer resolution, so it goes through the peer's own ``scale_cam_image``
    (the same post-processing) before the maps are correlated."""
    cam_lib = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    torch.manual_seed(1)
    x = torch.rand(1, 3, 128, 128)  # one image: the detector works at 320 px (~1 s a pass here)
    boxes, labels = _own_box(frcnn, x)
    layer = "backbone.body.13"
    with getattr(cam_lib, peer)(model=frcnn, target_layers=[frcnn.get_submodule(layer)]) as cam:
        theirs = cam(x, targets=[FasterRCNNBoxScoreTarget(labels=[int(lab)], bounding_boxes=[b])
                                 for b, lab in zip(boxes, labels)])
    ours = ak.explain(frcnn, x, ak.Box(boxes, labels), method=method, layer=layer)
    assert ours.layer == layer and tuple(ours.values.shape) == (1, 1, 10, 10)
    for row in range(len(x)):
        mine = scale_cam_image(ours.values[row].detach().numpy(), (128, 128))[0]
        assert mine.std() > 0 and theirs[row].std() > 0
        assert np.corrcoef(mine.ravel(), theirs[row].ravel())[0, 1] > 0.999


def test_several_boxes_per_image_sum_to_the_peer_target_of_all_boxes(frcnn):
    """pytorch-grad-cam's target with several boxes sums their scores; ours gives one row
    per box. Grad-CAM before its ReLU is linear in the score, so our rows' unrectified
    maps summed, then ReLU'd, equal the peer's map of the summed target."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import scale_cam_image
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    torch.manual_seed(1)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        out = frcnn(x)[0]
    boxes, labels = out["boxes"][[0, 5]], out["labels"][[0, 5]]
    layer = "backbone.body.13"
    with GradCAM(model=frcnn, target_layers=[frcnn.get_submodule(layer)]) as cam:
        theirs = cam(x, targets=[FasterRCNNBoxScoreTarget(labels=labels.tolist(),
                                                         bounding_boxes=list(boxes))])[0]
    ours = ak.explain(frcnn, x, ak.Box([boxes], [labels]), method="gradcam", layer=layer, relu=False)
    assert ours.meta["image_index"].tolist() == [0, 0]
    summed = ours.values.sum(0).clamp(min=0).detach().numpy()
    mine = scale_cam_image(summed, (128, 128))[0]
    assert mine.std() > 0 and np.corrcoef(mine.ravel(), theirs.ravel())[0, 1] > 0.999


def test_saliency_equals_autograd_of_the_box_score(frcnn):
    torch.manual_seed(2)
    x = torch.rand(2, 3, 112, 112)
    boxes, labels = _own_box(frcnn, x)
    leaf = x.clone().requires_grad_(True)
    out = frcnn(leaf)
    total = sum(_hand_score(o, b, int(l)) for o, b, l in zip(out, boxes, labels))
    expected = torch.autograd.grad(total, leaf)[0].abs()
    got = ak.explain(frcnn, x, ak.Box(boxes, labels), method="saliency").values
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.max()))


# --- 2. every torchvision detector family -----------------------------------------------

FAMILIES = ("fasterrcnn", "retinanet", "fcos", "ssd")
RISE_OPTIONS = {"n_masks": 4, "grid": 2, "seed": 0}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_every_kind_of_method(family):
    """Saliency, Grad-CAM (automatic layer), occlusion and RISE on two 64-px images:
    finite maps of the right shape. The automatic layer has the image batch (never RoI
    pooling); which one it is per family is recorded in the assertion below."""
    model = _detector(family)
    torch.manual_seed(3)
    x = torch.rand(2, 3, 64, 64)
    boxes, labels = _own_box(model, x)
    target = ak.Box(boxes, labels)
    rise = dict(RISE_OPTIONS)
    if "probabilities" in ak.get_method("rise").options:  # the example plugin's RISE
        rise["probabilities"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttributionWarning)  # untrained heads: flat scores
        with assert_model_untouched(model):
            sal = ak.explain(model, x, target, method="saliency")
            cam = ak.explain(model, x, target, method="gradcam")
            occ = ak.explain(model, x, target, method="occlusion", window=32, stride=32)
            ris = ak.explain(model, x, target, method="rise", **rise)
    assert tuple(sal.values.shape) == (2, 3, 64, 64)
    assert tuple(occ.values.shape) == tuple(ris.values.shape) == (2, 1, 64, 64)
    assert cam.values.ndim == 4 and cam.values.shape[:2] == (2, 1)
    assert "roi" not in cam.layer
    # the rule's picks: the last spatial layer on the path to the score inside the model's
    # backbone (an FPN level for Faster R-CNN), never a head's convolution
    expected_layer = {"fasterrcnn": "backbone.fpn.layer_blocks.0",
                      "retinanet": "backbone",  # the whole (tiny) backbone: a tensor output
                      "fcos": "backbone",
                      "ssd": "backbone.extra.3.0"}[family]  # never a head's convolution
    assert cam.layer == expected_layer
    for r in (sal, cam, occ, ris):
        assert bool(torch.isfinite(torch.as_tensor(r.values)).all())


def test_gradcam_on_a_backbone_layer_reaches_the_score():
    """With the backbone's feature map named (the layer pytorch-grad-cam's detection
    tutorial uses), a one-stage detector's Grad-CAM is not empty."""
    model = _detector("retinanet")
    torch.manual_seed(4)
    x = torch.rand(1, 3, 64, 64)
    boxes, labels = _own_box(model, x)
    r = ak.explain(model, x, ak.Box(boxes, labels), method="hirescam", layer="backbone", relu=False)
    assert tuple(r.values.shape) == (1, 1, 16, 16) and float(r.values.abs().max()) > 0


def test_images_of_different_sizes_one_result_each():
    model = _detector("fasterrcnn")
    torch.manual_seed(5)
    images = [torch.rand(3, 64, 80), torch.rand(3, 48, 64)]
    own = [_own_box(model, im[None]) for im in images]
    boxes = [own[0][0], own[1][0].repeat(2, 1)]  # 1 box, then 2 boxes
    labels = [own[0][1], own[1][1].repeat(2)]
    with assert_model_untouched(model):
        results = ak.explain(model, images, ak.Box(boxes, labels), method="saliency")
    assert isinstance(results, list) and len(results) == 2
    for im, r, k in zip(images, results, (1, 2)):
        assert tuple(r.values.shape) == (k, 3, *im.shape[1:])
        assert bool(torch.isfinite(r.values).all()) and float(r.values.abs().max()) > 0


def test_a_box_nobody_detects_gives_a_zero_map_and_a_warning():
    model = _detector("fasterrcnn")
    torch.manual_seed(6)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)[0]
    box = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert float(tv_box_iou(box[None], out["boxes"]).max()) < 0.5  # no match: score 0
    with pytest.warns(AttributionWarning, match="zero everywhere"):
        r = ak.explain(model, x, ak.Box(box, 1), method="saliency")
    assert float(r.values.abs().max()) == 0


# --- errors: named, before the work, model untouched -------------------------------------

@pytest.mark.parametrize("case", ["box_on_classifier", "class_on_detector", "int_on_detector",
                                  "too_many_labels", "too_many_boxes"])
def test_wrong_targets_are_named_before_any_work(case):
    detector, classifier = _detector("fasterrcnn"), TinyCNN().eval()
    model, target, match = {
        "box_on_classifier": (classifier, ak.Box([1, 1, 9, 9], 1), "Box reads one dict of detections"),
        "class_on_detector": (detector, ak.Class(1), r"reads \(B, classes\) scores; the model returned list"),
        "int_on_detector": (detector, 1, r"reads \(B, classes\) scores; the model returned list"),
        "too_many_labels": (detector, ak.Box(torch.tensor([[0, 0, 5, 5.0], [1, 1, 6, 6]]), [1, 2, 0]),
                            "3 labels for 2 boxes"),
        "too_many_boxes": (detector, ak.Box(torch.tensor([[0, 0, 5, 5.0]] * 3), 1), "3 boxes for a batch of 2"),
    }[case]
    x = torch.rand(2, 3, 32, 32)
    for method in ("saliency", "gradcam", "occlusion"):
        with forward_rows(model) as rows, assert_model_untouched(model), \
                pytest.raises(TargetError, match=match):
            ak.explain(model, x, target, method=method)
        assert sum(rows) <= 2 * len(x), (method, rows)  # at most the probe and one forward


@pytest.mark.parametrize("box,match", [
    ([5, 5, 1, 9], r"x2 > x1 .* box 0 is \[5.0, 5.0, 1.0, 9.0\]"),
    ([1, 1, 5, float("nan")], "finite"),
    ([1, 2, 3], r"shape \(4,\) or \(B, 4\), got \(3,\)"),
    (torch.zeros(2, 2, 4), r"got \(2, 2, 4\)"),
    ("box", "could not read str"),
])
def test_bad_boxes_are_refused_by_name(box, match):
    with pytest.raises(TargetError, match=match):
        ak.Box(box, 1)
    with pytest.raises(ValueError):  # TargetError is also the builtin a user expects
        ak.Box(box, 1)


# --- hand-made outputs: the two scores, by hand -----------------------------------------

def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


REF = [10.0, 10.0, 30.0, 30.0]
DETS = [[12.0, 10.0, 30.0, 32.0], [10.0, 10.0, 29.0, 30.0], [0.0, 0.0, 8.0, 8.0]]


def _output(**extra) -> list[dict]:
    one = {"boxes": torch.tensor(DETS), "labels": torch.tensor([1, 2, 1]),
           "scores": torch.tensor([0.6, 0.9, 0.3]), **extra}
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "scores": torch.zeros(0)}
    return [one, empty]


def test_iou_plus_score_by_hand():
    """pytorch-grad-cam's definition: the highest-IoU detection (index 1, label 2)."""
    ious = [_iou(REF, d) for d in DETS]
    assert max(ious) == ious[1] > 0.5
    got = ak.Box(torch.tensor([REF, REF]), torch.tensor([2, 1])).bind(2).score(_output())
    assert got.tolist() == pytest.approx([ious[1] + 0.9, 0.0])
    wrong_label = ak.Box(REF, 1).bind(2).score(_output(), images=torch.tensor([0, 0]))
    assert wrong_label.tolist() == [0.0, 0.0]  # best IoU has label 2: 0, not the next box


def test_drise_similarity_torchvision_output_by_hand():
    """Label and score only: P_j one-hot at its label, the score as O_j:
    max_j IoU · [label_j = 1] · score_j = max(IoU_0 · 0.6, IoU_2 · 0.3)."""
    expected = max(_iou(REF, DETS[0]) * 0.6, _iou(REF, DETS[2]) * 0.3)
    box = ak.Box(REF, 1, score="drise").bind(2)
    got = box.score(_output(), images=torch.tensor([0, 1]))
    assert got.tolist() == pytest.approx([expected, 0.0])
    with_objectness = _output(objectness=torch.tensor([0.2, 0.5, 0.8]))[:1]  # O_j given: used
    expected = max(_iou(REF, DETS[0]) * 0.2, _iou(REF, DETS[2]) * 0.8)
    assert box.score(with_objectness, images=torch.tensor([0])).tolist() == pytest.approx([expected])


def test_drise_similarity_with_probabilities_and_objectness_by_hand():
    """The paper's terms when the output carries them: cos(one-hot(2), P_j) · O_j."""
    probs = [[0.1, 0.6, 0.3], [0.05, 0.15, 0.8], [0.5, 0.25, 0.25]]
    objectness = [0.7, 0.4, 0.9]
    out = _output(probs=torch.tensor(probs), objectness=torch.tensor(objectness))
    sims = [_iou(REF, d) * p[2] / math.sqrt(sum(v * v for v in p)) * o
            for d, p, o in zip(DETS, probs, objectness)]
    got = ak.Box(torch.tensor([REF, REF]), 2, score="drise").bind(2).score(out)
    assert got.tolist() == pytest.approx([max(sims), 0.0], rel=1e-6)
    no_objectness = _output(probs=torch.tensor(probs))
    sims_1 = [_iou(REF, d) * p[2] / math.sqrt(sum(v * v for v in p)) for d, p in zip(DETS, probs)]
    got = ak.Box(REF, 2, score="drise").bind(1).score(no_objectness[:1])
    assert got.tolist() == pytest.approx([max(sims_1)], rel=1e-6)


def test_from_detections_keeps_boxes_above_the_score():
    out = _output()
    out[0]["boxes"] = torch.cat([out[0]["boxes"], torch.tensor([[5.0, 5.0, 5.0, 9.0]])])
    out[0]["labels"] = torch.cat([out[0]["labels"], torch.tensor([1])])
    out[0]["scores"] = torch.cat([out[0]["scores"], torch.tensor([0.95])])  # degenerate: dropped
    box = ak.Box.from_detections(out, min_score=0.5)
    index, rows = box.expand(2)
    assert index.tolist() == [0, 0]  # image 1 has none; the highest scores first
    assert rows.boxes.tolist() == [DETS[1], DETS[0]] and rows.box_labels.tolist() == [2, 1]
    only_1 = ak.Box.from_detections(out, min_score=0.0, labels=[1]).expand(2)[1]
    assert only_1.boxes.tolist() == [DETS[0], DETS[2]]
    best_2 = ak.Box.from_detections(out, min_score=0.0, max_per_image=2).expand(2)[1]
    assert best_2.boxes.tolist() == [DETS[1], DETS[0]]  # scores 0.9, 0.6 (0.95: degenerate)
    with pytest.raises(TargetError, match="max_per_image"):
        ak.Box.from_detections(out, max_per_image=0)
    with pytest.raises(TargetError, match=r"no detection with score >= 0.99 \(the highest score is 0.95\)"):
        ak.Box.from_detections(out, min_score=0.99)
    with pytest.raises(TargetError, match="the model returned Tensor"):
        ak.Box.from_detections(torch.zeros(2, 5))
