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

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from attribkit.errors import TargetError
from attribkit.targets.base import describe

_BOX_FITS = ("Box reads a detector's eval-mode output: a list with one dict per image holding "
             "'boxes' (N, 4) x1y1x2y2, 'labels' (N,) and 'scores' (N,), as torchvision's Faster "
             "R-CNN, RetinaNet, FCOS and SSD return. Other outputs: a callable target "
             "raw_output -> (B,)")


def detections(output: Any, n: int) -> list[Mapping[str, torch.Tensor]]:
    """The per-image detection dicts of a detector's raw output for ``n`` rows."""
    if isinstance(output, Mapping) and n == 1 and "boxes" in output:
        output = [output]
    ok = (isinstance(output, Sequence) and len(output) == n
          and all(isinstance(d, Mapping) and all(k in d for k in ("boxes", "labels", "scores"))
                  for d in output))
    if not ok:
        rows = f" ({n} here)" if isinstance(output, Sequence) else ""
        raise TargetError(f"Box reads one dict of detections per image{rows}; the model "
                          f"returned {describe(output)}. {_BOX_FITS}")
    return list(output)


def own_boxes(output: Any, min_score: float = 0.5, *, labels: Sequence[int] | None = None,
              max_per_image: int | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The boxes and labels (one ``(K_i, 4)`` and ``(K_i,)`` tensor per image) that
    ``Box.from_detections`` explains: every detection of ``output`` (a detector's eval-mode
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
    return boxes, classes
