"""Per-item targets of :func:`~attribkit.datasets.run.explain_dataset`: a detection box or
a segmentation region for each item, from the data or from a function of the item.

An item carries its target in one of these forms (:data:`ITEM_TARGET_FORMS`):

* ``(image, ak.Box(box, label))``: one ``(4,)`` x1y1x2y2 box in input pixels and its class;
* ``(image, {"boxes": (1, 4) or (4,), "labels": (1,) or int})``: torchvision's detection
  target with one object;
* ``(image, box, label)``: a float ``(4,)`` box tensor and an integer class (a
  ``TensorDataset(images, boxes, labels)``);
* ``(image, ak.Region(cls, mask))``: one class, and ``None`` (every pixel) or an ``(H, W)``
  mask of the image's size.

Or ``target=ak.per_item(fn)``: ``fn(item)`` (the item as the dataset gives it) returns one
of these targets for each item. The store keeps one map per item, so each item names one
thing: several boxes per item are refused (:class:`~attribkit.errors.TargetError`); give
one item per box instead.

What the store keeps for the report (columns of ``N`` rows, :mod:`attribkit.datasets.store`):
``targets`` (the explained class), ``boxes`` ``(N, 4)`` float32 (NaN: no box) for box
targets, ``regions`` ``(N, h, w)`` bool for region targets: the mask sampled at most
:data:`REGION_SIDE` pixels a side (nearest pixel; all False: no mask, every pixel). The
mask is drawn as an outline on a thumbnail of 112 px, for which 64 px is close enough;
a full-size mask would weigh as much as a one-channel map (a 224 x 224 mask: 50 kB an
item, against 3 kB), and a run-length code would not fit the store's fixed-shape
chunks. The exact mask is the data's: explain the item again to see it at full size.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from attribkit.errors import InputError, TargetError

REGION_SIDE = 64
ITEM_TARGET_FORMS = ("(image, ak.Box(box, label)), (image, {'boxes': (1, 4), 'labels': (1,)}), "
                     "(image, box (4,) float, label int) or (image, ak.Region(cls, mask))")
KINDS = ("box", "region")


class PerItem:
    """``target=ak.per_item(fn)`` for :func:`~attribkit.datasets.run.explain_dataset`: each
    item's target is ``fn(item)`` (a ``Box`` or ``Region`` of one thing, or another form of
    :data:`ITEM_TARGET_FORMS` without the image). ``fn`` runs where the items are read
    (the DataLoader's workers when ``num_workers > 0``)."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        if not callable(fn):
            raise TargetError(f"per_item takes a function item -> target, got {type(fn).__name__}")
        self.fn = fn

    def __repr__(self) -> str:
        return f"per_item({self.name})"

    @property
    def name(self) -> str:
        """The function's qualified name (recorded in the store's settings)."""
        return f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', repr(self.fn))}"


def per_item(fn: Callable[[Any], Any]) -> PerItem:
    """The target ``fn(item)`` for each item of ``explain_dataset``'s data, e.g.
    ``target=ak.per_item(lambda item: ak.Box(item[1]["boxes"][0], item[1]["labels"][0]))``."""
    return PerItem(fn)


@dataclasses.dataclass(frozen=True)
class ItemTarget:
    """One item's target: ``kind`` ``"box"`` (``box`` ``(4,)``) or ``"region"`` (``mask``
    ``(H, W)`` bool or ``None``), and its class ``label``."""

    kind: str
    label: int
    box: torch.Tensor | None = None
    mask: torch.Tensor | None = None


def is_target_part(value: Any) -> bool:
    """Whether an item's second part is a target (rather than a label)."""
    from attribkit.targets import Box, Region

    return isinstance(value, (Box, Region)) or (isinstance(value, Mapping) and "boxes" in value)


def is_box_tensor(value: Any) -> bool:
    """Whether an item's second part is a float ``(4,)`` box (the form ``(image, box, label)``)."""
    if isinstance(value, torch.Tensor):
        floating = value.is_floating_point()
    elif isinstance(value, np.ndarray):
        floating = value.dtype.kind == "f"
    else:
        return False
    return floating and tuple(value.shape) in ((4,), (1, 4))


def item_target(value: Any, index: int, image_shape: Sequence[int], label: Any = None) -> ItemTarget:
    """One item's target as an :class:`ItemTarget` (``TargetError`` naming the item and the
    forms otherwise). ``label``: the class when ``value`` is a bare box."""
    from attribkit.targets import Box, Region

    where = f"item {index} of the data"
    if isinstance(value, Mapping):
        if "labels" not in value:
            raise TargetError(f"{where} has a detection target without 'labels'; a target is {ITEM_TARGET_FORMS}")
        value = Box(_one_box(value["boxes"], where), _one_label(value["labels"], where))
    elif is_box_tensor(value):
        value = Box(_one_box(value, where), _one_label(label, where))
    if isinstance(value, Box):
        if value.several or len(value.boxes) != 1:
            count = sum(len(b) for b in value.boxes) if value.several else len(value.boxes)
            raise TargetError(f"{where} names {count} boxes; explain_dataset stores one map per item: give "
                              "one box per item (one item per box), or explain the image with ak.explain")
        return ItemTarget("box", int(value.box_labels[0]), box=value.boxes[0].float())
    if isinstance(value, Region):
        if len(value.classes) != 1:
            raise TargetError(f"{where} has a Region of {len(value.classes)} classes; an item's Region has one")
        mask = value.mask
        if mask is not None:
            if mask.ndim == 3 and len(mask) == 1:
                mask = mask[0]
            if tuple(mask.shape) != tuple(image_shape[-2:]):
                raise TargetError(f"{where} has a Region mask of shape {tuple(mask.shape)} for an image of "
                                  f"{tuple(image_shape[-2:])}; an item's mask is (H, W), like the image")
            mask = mask != 0
            if not bool(mask.any()):
                raise TargetError(f"{where} has an empty Region mask: nothing to explain")
        return ItemTarget("region", int(value.classes[0]), mask=mask)
    raise TargetError(f"{where} has the target {type(value).__name__}; a target is {ITEM_TARGET_FORMS}")


def _one_box(value: Any, where: str) -> torch.Tensor:
    box = torch.as_tensor(value).detach().float()
    if box.ndim == 2 and len(box) != 1:
        raise TargetError(f"{where} names {len(box)} boxes; explain_dataset stores one map per item: give "
                          "one box per item (one item per box), or explain the image with ak.explain")
    return box.reshape(-1)


def _one_label(value: Any, where: str) -> int:
    if (isinstance(value, torch.Tensor) and value.numel() == 1) or (isinstance(value, np.ndarray) and value.size == 1):
        value = value.item()
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TargetError(f"{where} has the box label {value!r}; a label is one integer class")
    return int(value)


def batch_target(targets: Sequence[ItemTarget], batch: int) -> Any:
    """The ``Box`` or ``Region`` of a batch's readable rows (``InputError`` when the rows'
    targets are of different kinds)."""
    from attribkit.targets import Box, Region

    kinds = {t.kind for t in targets}
    if len(kinds) > 1:
        raise InputError(f"the items of batch {batch} have targets of different kinds ({', '.join(sorted(kinds))}); "
                         "a dataset's items are all boxes or all regions")
    labels = torch.tensor([t.label for t in targets])
    if kinds == {"box"}:
        return Box(torch.stack([t.box for t in targets]), labels)
    if all(t.mask is None for t in targets):
        return Region(labels)
    shape = next(t.mask.shape for t in targets if t.mask is not None)
    if any(t.mask is not None and t.mask.shape != shape for t in targets):
        raise InputError(f"the region masks of batch {batch} have different shapes")
    return Region(labels, torch.stack([t.mask if t.mask is not None else torch.ones(shape, dtype=torch.bool)
                                       for t in targets]))


def no_metrics_with_item_targets() -> str:
    """Why explain_dataset's metrics refuse per-item box / region targets."""
    return ("explain_dataset's metrics score a classifier's class per image; with per-item Box or Region "
            "targets the model's output is detections or logit maps: run the metrics on explain's results "
            "(ak.evaluate) or the bench's detection and segmentation tasks, and explain_dataset without metrics")


def target_setting(target: Any, item: Any) -> dict[str, str] | None:
    """The items' targets as the run's settings (``None`` when there are none):
    ``{"per_item": the function's name, "kind": ...}`` or ``{"from_items": kind}``."""
    if item.target is None:
        return None
    if isinstance(target, PerItem):
        return {"per_item": target.name, "kind": item.target.kind}
    return {"from_items": item.target.kind}


def kind_of(target: Any) -> str:
    """``"box"`` or ``"region"`` for a batch's target."""
    from attribkit.targets import Box

    return "box" if isinstance(target, Box) else "region"


def region_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    """The stored side of region masks for images of ``image_shape``: at most
    :data:`REGION_SIDE` pixels a side, the aspect kept."""
    h, w = int(image_shape[-2]), int(image_shape[-1])
    f = max(h, w) / REGION_SIDE
    return (h, w) if f <= 1 else (max(1, round(h / f)), max(1, round(w / f)))


def sample_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` ``(..., H, W)`` at ``shape``: the nearest pixel to each cell's centre."""
    h, w = mask.shape[-2:]
    rows = np.minimum((np.arange(shape[0]) + 0.5) * h / shape[0], h - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * w / shape[1], w - 1).astype(int)
    return mask[..., rows[:, None], cols[None, :]]


def target_columns(target: Any, kind: str, image_shape: Sequence[int]) -> dict[str, np.ndarray]:
    """The store's columns of a batch's target (readable rows): ``boxes`` or ``regions``."""
    if kind != kind_of(target):
        raise InputError(f"a batch's items have {kind_of(target)} targets, the first item a {kind} target; "
                         "a dataset's items are all boxes or all regions")
    if kind == "box":
        return {"boxes": target.boxes.numpy().astype(np.float32)}
    shape = region_shape(image_shape)
    if target.mask is None:
        return {"regions": np.zeros((len(target.classes), *shape), dtype=bool)}
    masks = target.mask.numpy() != 0
    full = masks.reshape(len(masks), -1).all(1)  # filled in for an item without a mask
    sampled = sample_mask(masks, shape)
    sampled[full] = False
    return {"regions": sampled}


def target_bytes(target: Any, row: int) -> bytes:
    """Row ``row`` of a batch's target as bytes, for the item's input digest."""
    if kind_of(target) == "box":
        return b"\0box " + target.boxes[row].numpy().astype(np.float32).tobytes() + \
            f" {int(target.box_labels[row])}".encode()
    mask = b"" if target.mask is None else (target.mask[row].numpy() != 0).tobytes()
    return f"\0region {int(target.classes[row])} ".encode() + mask


__all__ = ["ITEM_TARGET_FORMS", "PerItem", "per_item"]
