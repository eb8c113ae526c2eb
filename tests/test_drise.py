"""D-RISE against a hand-written D-RISE (one mask and one box at a time) on a randomly
initialised Faster R-CNN and on a fake detector; one forward per mask per image."""

import pytest
import torch
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
from torchvision.ops import box_iou

import attribkit as ak
from attribkit.errors import InvalidOptionError, TargetError
from attribkit.perturbation.rise import RiseMasks
from attribkit.testing import assert_model_untouched, forward_rows

N, GRID, P = 8, 4, 0.5


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)  # min_size / max_size 96: no resizing of the 96 px images (fast forwards)
    return fasterrcnn_mobilenet_v3_large_320_fpn(num_classes=3, weights=None, weights_backbone=None,
                                                 box_score_thresh=0.0, min_size=96, max_size=96).eval()


def masks_for(size, n=N, seed=0):
    return RiseMasks(n, size, grid=GRID, p_keep=P, seed=seed)[torch.arange(n)]


def hand_drise(detect, image, box, label, masks, weight):
    """D-RISE by hand for one reference box: sum_i max_j IoU(box, d_j) * weight_j * M_i / N,
    one masked image per forward."""
    total = torch.zeros(image.shape[-2:])
    for mask in masks[:, 0]:
        found = detect((image * mask)[None])[0]
        if len(found["boxes"]):
            iou = box_iou(box[None], found["boxes"])[0]
            total += float((iou * weight(found, label)).max()) * mask
    return total / len(masks)


def test_faster_rcnn_equals_a_loop_and_forwards_each_masked_image_once(detector):
    torch.manual_seed(2)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        found = detector(x)[0]
    boxes, labels = found["boxes"][:2], found["labels"][:2]
    masks = masks_for((96, 96), n=6)

    def same_label_times_score(found, label):  # torchvision: one-hot classes, the score for objectness
        return (found["labels"] == label).float() * found["scores"]

    with torch.no_grad():
        expected = torch.stack([hand_drise(detector, x[0], b, int(lab), masks, same_label_times_score)
                                for b, lab in zip(boxes, labels)])
    with assert_model_untouched(detector), forward_rows(detector) as rows:
        got = ak.explain(detector, x, ak.Box([boxes], [labels]), method="drise", n_masks=6, grid=GRID,
                         p_keep=P, forward_batch_size=4)
    assert got.values.shape == (2, 1, 96, 96) and got.meta["image_index"].tolist() == [0, 0]
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got.values[:, 0], expected, rtol=1e-4, atol=1e-6)
    # the clean forward of the 2 rows, then the one image once per mask (both boxes scored on it)
    assert rows == [2, 4, 2], rows


class FakeDetector:
    """A plain function of the image: fixed boxes shifted by the image's content, class
    probabilities and objectness from the mean intensity inside each box; counts rows."""

    BASE = torch.tensor([[2.0, 2, 12, 14], [8, 4, 20, 20], [1, 10, 18, 22], [5, 5, 9, 9]])

    def __init__(self):
        self.rows = []

    def __call__(self, x):
        self.rows.append(len(x))
        out = []
        for image in x:
            means = torch.stack([image[:, int(b[1]):int(b[3]), int(b[0]):int(b[2])].mean() for b in self.BASE])
            shift = 3 * image[0, :8, :8].mean()
            boxes = self.BASE + torch.stack([shift, -shift, shift, shift])
            probs = torch.stack([means, 1 - means, means ** 2], 1).clamp(min=0)
            out.append({"boxes": boxes, "labels": probs.argmax(1), "scores": probs.max(1).values,
                        "probs": probs, "objectness": means.sigmoid()})
        return out


def test_fake_detector_equals_a_loop_with_every_box_of_an_image_in_one_forward():
    torch.manual_seed(3)
    x = torch.rand(3, 3, 24, 24)
    fake = FakeDetector()
    boxes = [torch.tensor([[2.0, 2, 12, 14], [8, 4, 20, 20]]), torch.tensor([[1.0, 10, 18, 22]]),
             torch.tensor([[2.0, 2, 12, 14], [5, 5, 9, 9], [8, 4, 20, 20]])]
    labels = [torch.tensor([0, 1]), torch.tensor([2]), torch.tensor([1, 0, 2])]
    masks = masks_for((24, 24), n=16)

    def cosine_times_objectness(found, label):  # the paper's similarity
        return found["probs"][:, label] / found["probs"].norm(dim=1) * found["objectness"]

    expected = torch.stack([hand_drise(fake, x[i], b, int(lab), masks, cosine_times_objectness)
                            for i in range(3) for b, lab in zip(boxes[i], labels[i])])
    fake.rows.clear()
    got = ak.explain(ak.as_predict(fake, array="torch"), x, ak.Box(boxes, labels), method="drise",
                     n_masks=16, grid=GRID, p_keep=P, forward_batch_size=20)
    assert got.meta["image_index"].tolist() == [0, 0, 1, 2, 2, 2]
    torch.testing.assert_close(got.values[:, 0], expected)
    # 6 rows of the clean forward, then 3 images x 16 masks = 48 masked images, not 6 x 16
    assert fake.rows == [6, 20, 20, 8], fake.rows
    assert sum(fake.rows[1:]) == 3 * 16


@pytest.mark.parametrize("target", [None, 1, ak.Region(1), lambda out: out[0]["scores"][:1]])
def test_a_target_that_is_not_a_box_is_refused_before_any_forward(target):
    fake = FakeDetector()
    with pytest.raises(TargetError, match="drise explains a detector's boxes"):
        ak.explain(ak.as_predict(fake, array="torch"), torch.rand(1, 3, 24, 24), target, method="drise")
    assert fake.rows == []


@pytest.mark.parametrize("options", [{"n_masks": 0}, {"grid": -1}, {"p_keep": 1.5}, {"seed": 1.5},
                                     {"forward_batch_size": 0}])
def test_bad_options_refused_before_any_forward(options):
    fake = FakeDetector()
    with pytest.raises(InvalidOptionError):
        ak.explain(ak.as_predict(fake, array="torch"), torch.rand(1, 3, 24, 24),
                   ak.Box([2, 2, 12, 14], 0), method="drise", **options)
    assert fake.rows == []
