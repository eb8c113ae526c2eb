"""Detection targets: a detector's output matched to a reference box (``Box``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from attribkit.errors import TargetError
from attribkit.targets.base import Target, as_index_tensor, row_index
from attribkit.targets.detections import detections, own_boxes

SCORES = ("iou+score", "drise")
def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in ``a`` (M, 4) with every box in ``b`` (N, 4), x1y1x2y2:
    ``|a ∩ b| / |a ∪ b|`` as ``(M, N)`` (differentiable in both)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)


class Box(Target):
    """A detector's score for a reference box, matched in every forward (also on the
    perturbed copies of occlusion, RISE and D-RISE).

    ``box``: x1y1x2y2 in input pixels, ``(4,)`` for every image or ``(B, 4)`` one per
    image, or a list of ``B`` ``(K_i, 4)`` tensors to explain several boxes per image
    (one row per box, image-major; ``result.meta["image_index"]`` names each row's image).
    ``label``: the class of each box (an int, or one per box in the same layout).

    ``score="iou+score"`` (default; pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``): the
    detection with the highest IoU with the reference; if its label matches and its IoU
    exceeds ``iou_threshold``, ``S = IoU + score``, else 0.
    ``score="drise"`` (Petsiuk et al. 2021, "Black-box Explanation of Object Detectors via
    Saliency Maps", CVPR, arXiv:2006.03204): the reference is the detection vector
    ``d_t = (L_t, P_t)``, ``L_t`` the box and ``P_t`` one-hot at ``label``;
    ``S = max_j IoU(L_t, L_j) · cos(P_t, P_j) · O_j`` over the detections ``j`` of the
    forward. Where the output carries the paper's terms they are used: ``P_j`` = key
    ``"probs"`` ``(N, C)`` (class probabilities), ``O_j`` = key ``"objectness"`` ``(N,)``
    (1 when absent, as for detectors without an objectness score). torchvision's
    detectors keep only a label and a score per detection: then ``P_j`` is one-hot at
    ``labels[j]`` (the cosine is 1 for the same label, 0 otherwise) and the score stands
    in for ``O_j`` (the one confidence the output keeps; a one-hot ``P_j`` would drop it):
    ``S = max_j IoU · [labels_j = label] · scores_j``. See ``docs/detection.md``.

    :meth:`from_detections` makes a ``Box`` of a detector's own detections above a score.
    """

    def __init__(self, box: Any, label: Any, *, iou_threshold: float = 0.5,
                 score: str = "iou+score") -> None:
        if score not in SCORES:
            raise TargetError(f"Box(score=...) must be one of {', '.join(SCORES)}; got {score!r}")
        if not 0 <= float(iou_threshold) < 1:
            raise TargetError(f"Box(iou_threshold=...) must lie in [0, 1), got {iou_threshold!r}")
        self.kind, self.iou_threshold = score, float(iou_threshold)
        self.several = isinstance(box, (list, tuple)) and len(box) > 0 and all(
            isinstance(b, torch.Tensor) and b.ndim == 2 for b in box)
        if self.several:
            self.boxes = [_as_boxes(b) for b in box]
            self.box_labels = _labels_like(label, [len(b) for b in self.boxes])
        else:
            self.boxes = _as_boxes(box)
            self.box_labels = as_index_tensor(label, "Box(label)")

    @classmethod
    def from_detections(cls, output: Any, min_score: float = 0.5, *, labels: Any = None,
                        max_per_image: int | None = None, iou_threshold: float = 0.5,
                        score: str = "iou+score") -> Box:
        """A ``Box`` of a detector's own detections: every box of ``output`` (the model's
        eval-mode output on the images to explain, one dict per image) with a score of at
        least ``min_score`` (a label in ``labels``, the ``max_per_image`` best, when given),
        one row per box; see
        :func:`attribkit.targets.detections.own_boxes`."""
        boxes, classes = own_boxes(output, min_score, labels=labels, max_per_image=max_per_image)
        return cls(boxes, classes, iou_threshold=iou_threshold, score=score)

    def __repr__(self) -> str:
        n = sum(len(b) for b in self.boxes) if self.several else len(self.boxes)
        return f"Box({n} box{'es' if n != 1 else ''}, score={self.kind!r})"

    def _copy(self, boxes: torch.Tensor, labels: torch.Tensor) -> Box:
        out = Box.__new__(Box)
        out.kind, out.iou_threshold, out.several, out.bound = self.kind, self.iou_threshold, False, True
        out.boxes, out.box_labels = boxes, labels
        return out

    def bind(self, batch: int) -> Box:
        if self.several:
            if len(self.boxes) != batch:
                raise TargetError(f"Box got box lists for {len(self.boxes)} images, the batch has {batch}")
            bound = Box.__new__(Box)
            bound.__dict__.update(self.__dict__)
            bound.bound = True
            return bound
        if len(self.boxes) not in (1, batch):
            raise TargetError(f"Box got {len(self.boxes)} boxes for a batch of {batch} images; for "
                              "several boxes per image pass a list of (K, 4) tensors, one per image")
        if len(self.box_labels) not in (1, len(self.boxes)):
            raise TargetError(f"Box got {len(self.box_labels)} labels for {len(self.boxes)} boxes")
        return self._copy(self.boxes.expand(batch, 4).clone(), self.box_labels.expand(batch).clone())

    def expand(self, batch: int) -> tuple[torch.Tensor, Target] | None:
        if not self.several:
            return None
        counts = torch.tensor([len(b) for b in self.boxes])
        image_index = torch.arange(batch).repeat_interleave(counts)
        return image_index, self._copy(torch.cat(self.boxes), torch.cat(self.box_labels))

    def take(self, rows: torch.Tensor) -> Box:
        rows = rows.cpu()
        return self._copy(self.boxes[rows], self.box_labels[rows])

    def labels(self) -> torch.Tensor | None:
        return None if self.several else self.box_labels

    def score(self, output: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        n = len(output) if isinstance(output, Sequence) else 1
        found = detections(output, n)
        rows = row_index(images, n, torch.device("cpu"))
        scores = [self._one(d, self.boxes[int(r)], int(self.box_labels[int(r)]))
                  for d, r in zip(found, rows)]
        return self.check_rows(torch.stack(scores), n)

    def _one(self, found: Mapping[str, torch.Tensor], box: torch.Tensor, label: int) -> torch.Tensor:
        boxes, labels, scores = found["boxes"], found["labels"], found["scores"]
        if len(boxes) == 0:
            return scores.sum() * 0  # no detection: 0, still on the graph
        ious = box_iou(box.to(boxes.device, boxes.dtype)[None], boxes)[0]
        if self.kind == "drise":
            return (ious * _drise_weight(found, label, labels, scores)).max()
        best = int(ious.argmax())
        if float(ious[best].detach()) > self.iou_threshold and int(labels[best]) == label:
            return ious[best] + scores[best]
        return scores.sum() * 0


def _drise_weight(found: Mapping[str, torch.Tensor], label: int, labels: torch.Tensor,
                 scores: torch.Tensor) -> torch.Tensor:
    """``cos(P_t, P_j) · O_j`` per detection, ``P_t`` one-hot at ``label`` (see :class:`Box`)."""
    probs, objectness = found.get("probs"), found.get("objectness")
    has_probs = isinstance(probs, torch.Tensor) and probs.ndim == 2
    if has_probs:
        cosine = probs[:, label] / probs.norm(dim=1).clamp(min=torch.finfo(probs.dtype).tiny)
    else:
        cosine = (labels == label).to(scores.dtype)
    if isinstance(objectness, torch.Tensor):
        return cosine * objectness
    return cosine if has_probs else cosine * scores


def _as_boxes(box: Any) -> torch.Tensor:
    try:
        b = torch.as_tensor(box).detach()
    except (TypeError, ValueError, RuntimeError) as e:
        raise TargetError(f"Box takes x1y1x2y2 boxes of shape (4,) or (B, 4); could not read "
                          f"{type(box).__name__} as numbers ({e})") from None
    shape = tuple(b.shape)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4 or b.is_complex() or b.dtype == torch.bool:
        raise TargetError(f"Box takes x1y1x2y2 boxes of shape (4,) or (B, 4), got {shape}")
    b = b.float().cpu()
    bad = ~torch.isfinite(b).all(1) | (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise TargetError(f"Box: every box must be finite with x2 > x1 and y2 > y1 (x1y1x2y2, "
                          f"pixels); box {i} is {[round(v, 4) for v in b[i].tolist()]}")
    return b


def _labels_like(label: Any, counts: list[int]) -> list[torch.Tensor]:
    if isinstance(label, (list, tuple)) and len(label) == len(counts) and not all(
            isinstance(v, int) for v in label):
        out = [as_index_tensor(v, "Box(label)") for v in label]
    else:
        one = as_index_tensor(label, "Box(label)")
        if len(one) != 1:
            raise TargetError("Box with several boxes per image: pass one label for all, or a list "
                              "with one label sequence per image")
        out = [one.expand(k).clone() for k in counts]
    for labels, k in zip(out, counts):
        if len(labels) not in (1, k):
            raise TargetError(f"Box got {len(labels)} labels for an image with {k} boxes")
    return [labels.expand(k).clone() if len(labels) == 1 else labels for labels, k in zip(out, counts)]
