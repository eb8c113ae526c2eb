"""Class targets: one class per image (``Class``), several labels per image (``Labels``)."""

from __future__ import annotations

from typing import Any

import torch

from attribkit.errors import TargetError
from attribkit.targets.base import Target, as_index_tensor, check_range, find_tensor, row_index

LOGIT_KEYS = ("logits", "scores")
_CLASS_FITS = ("Class and Labels read (B, classes) scores: a tensor, a dict or Hugging Face output "
               "with 'logits', or a tuple whose first element is one. A segmentation output "
               "(B, classes, H, W) fits Region(cls), a detector's list of dicts Box(box, label), "
               "an embedding Similarity(vector); for any other output pass target as a callable "
               "raw_output -> (B,)")


def class_scores(output: Any) -> torch.Tensor:
    """The ``(B, classes)`` scores of a classifier's raw output (``TargetError`` otherwise)."""
    scores = find_tensor(output, LOGIT_KEYS, what="(B, classes) scores", fits=_CLASS_FITS)
    if scores.ndim != 2:
        raise TargetError(f"this target reads (B, classes) scores; the model returned scores of "
                          f"shape {tuple(scores.shape)}. {_CLASS_FITS}")
    return scores


class Class(Target):
    """The score (logit) of class ``c``: ``scores[i, c_i]``, the meaning of a plain int target.

    ``c``: one int for every image, or one per image (a sequence or 1-D tensor).
    """

    def __init__(self, c: Any) -> None:
        self.classes = as_index_tensor(c, "Class(c)")

    def __repr__(self) -> str:
        return f"Class({self.classes.tolist() if len(self.classes) > 1 else int(self.classes[0])})"

    def bind(self, batch: int) -> Class:
        if len(self.classes) not in (1, batch):
            raise TargetError(f"Class got {len(self.classes)} classes for a batch of {batch} images")
        bound = Class(self.classes.expand(batch).clone())
        bound.bound = True
        return bound

    def take(self, rows: torch.Tensor) -> Class:
        taken = Class(self.classes[rows.cpu()])
        taken.bound = True
        return taken

    def labels(self) -> torch.Tensor:
        return self.classes

    def score(self, output: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        scores = class_scores(output)
        check_range(self.classes, scores.shape[1], "class")
        rows = row_index(images, len(scores), scores.device)
        picked = self.classes.to(scores.device)[rows]
        return self.check_rows(scores.gather(1, picked[:, None]).squeeze(1), len(scores))


class Labels(Target):
    """Multi-label models: the sigmoid score of each requested label, one map per label.

    ``Labels([3, 7])`` explains labels 3 and 7 of every image: the result has one row
    per (image, label), image-major (``result.values.reshape(B, 2, ...)``), with
    ``result.meta["image_index"]`` naming each row's image and ``result.target`` its
    label. ``score="sigmoid"`` (default) explains ``sigmoid(logit)``, the probability a
    multi-label model is trained to give (one-vs-rest, binary cross-entropy);
    ``score="logit"`` the logit itself.
    """

    def __init__(self, labels: Any, *, score: str = "sigmoid") -> None:
        if score not in ("sigmoid", "logit"):
            raise TargetError(f"Labels(score=...) must be 'sigmoid' or 'logit', got {score!r}")
        empty = isinstance(labels, (list, tuple)) and not labels
        self.label_list = torch.zeros(0, dtype=torch.long) if empty else as_index_tensor(
            labels, "Labels(labels)")
        if len(self.label_list) == 0:
            raise TargetError("Labels needs at least one label")
        self.kind = score

    def __repr__(self) -> str:
        return f"Labels({self.label_list.tolist()}, score={self.kind!r})"

    def bind(self, batch: int) -> Labels:
        bound = Labels(self.label_list, score=self.kind)
        bound.bound = True
        return bound

    def expand(self, batch: int) -> tuple[torch.Tensor, Target]:
        n = len(self.label_list)
        image_index = torch.arange(batch).repeat_interleave(n)
        rows = _LabelRows(self.label_list.repeat(batch), self.kind)
        return image_index, rows

    def take(self, rows: torch.Tensor) -> Labels:
        return self

    def score(self, output: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        raise TargetError("internal error: Labels is explained through its per-row expansion")


class _LabelRows(Target):
    """``Labels`` after expansion: one label per row."""

    bound = True

    def __init__(self, labels: torch.Tensor, kind: str) -> None:
        self.per_row = labels
        self.kind = kind

    def __repr__(self) -> str:
        return f"Labels({self.per_row.tolist()}, score={self.kind!r})"

    def bind(self, batch: int) -> _LabelRows:
        if len(self.per_row) != batch:
            raise TargetError(f"internal error: {len(self.per_row)} label rows for {batch} rows")
        return self

    def take(self, rows: torch.Tensor) -> _LabelRows:
        return _LabelRows(self.per_row[rows.cpu()], self.kind)

    def labels(self) -> torch.Tensor:
        return self.per_row

    def score(self, output: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        scores = class_scores(output)
        check_range(self.per_row, scores.shape[1], "label")
        rows = row_index(images, len(scores), scores.device)
        logit = scores.gather(1, self.per_row.to(scores.device)[rows][:, None]).squeeze(1)
        return self.check_rows(torch.sigmoid(logit) if self.kind == "sigmoid" else logit, len(scores))
