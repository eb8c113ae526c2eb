"""A detector's own detections as a :class:`~attribkit.targets.boxes.Box` target.

Explaining "why did the model find these objects" starts from the model's output on
the images::

    with torch.no_grad():
        found = detector(images)
    target = ak.Box.from_detections(found, min_score=0.5)
    results = ak.explain(detector, images, target, method="gradcam")

gives one row per detection kept (image-major; ``result.meta["image_index"]`` names
each row's image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attribkit.errors import TargetError
from attribkit.targets.boxes import Box, detections


def from_detections(output: Any, min_score: float = 0.5, *, labels: Sequence[int] | None = None,
                    max_per_image: int | None = None, iou_threshold: float = 0.5,
                    score: str = "iou+score") -> Box:
    """A :class:`Box` explaining every detection of ``output`` (a detector's eval-mode
    output: one dict of ``boxes`` / ``labels`` / ``scores`` per image, or one such dict
    for one image) whose score is at least ``min_score`` and, given ``labels``, whose
    label is one of them; at most ``max_per_image`` per image, the highest scores first.
    Boxes of zero width or height (an untrained detector makes them) are left out: no
    IoU can match them.

    ``TargetError`` when the output is not a detector's, or when no detection is kept
    (the message gives the highest score found)."""
    if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) \
            or min_score != min_score:
        raise TargetError(f"Box.from_detections(min_score=...) must be a number, got {min_score!r}")
    if max_per_image is not None and (isinstance(max_per_image, bool) or not isinstance(
            max_per_image, int) or max_per_image < 1):
        raise TargetError(f"Box.from_detections(max_per_image=...) must be a positive int or None, "
                          f"got {max_per_image!r}")
    n = len(output) if isinstance(output, Sequence) else 1
    found = detections(output, n)
    wanted = None if labels is None else torch.as_tensor(list(labels), dtype=torch.long)
    boxes, classes, best = [], [], None
    for d in found:
        b, lab, s = (d[k].detach().cpu() for k in ("boxes", "labels", "scores"))
        keep = (s >= min_score) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]) & torch.isfinite(b).all(1)
        if wanted is not None:
            keep &= torch.isin(lab.long(), wanted)
        if len(s):
            best = max(float(s.max()), best if best is not None else float("-inf"))
        kept = keep.nonzero()[:, 0]
        kept = kept[torch.argsort(s[kept], descending=True, stable=True)][:max_per_image]
        boxes.append(b[kept].float())
        classes.append(lab[kept].long())
    if sum(len(b) for b in boxes) == 0:
        top = "no detection at all" if best is None else f"the highest score is {best:.4g}"
        raise TargetError(f"Box.from_detections: no detection with score >= {min_score}"
                          + (f" and a label in {list(labels)}" if labels is not None else "")
                          + f" ({top}); lower min_score")
    return Box(boxes, classes, iou_threshold=iou_threshold, score=score)
