"""A dataset's items as batches for :func:`~attribkit.datasets.run.explain_dataset`.

An item is an image tensor ``(C, H, W)``, or a tuple ``(image,)``, ``(image,
label)`` or ``(image, label, mask)`` (``mask``: the ``(H, W)`` evidence, for
localisation metrics), or an image with its target (a box or a region:
:mod:`attribkit.datasets.targets`), or an :class:`~attribkit.datasets.folder.Unreadable`
(one skipped row). :func:`batches` builds a ``DataLoader`` over the batches a
process computes: batch ``b`` is always items ``b*B .. b*B+B-1``, whatever
order or process computes it, so it is chunk ``b`` of the store. Collation runs
in the loader's workers (decoding overlaps the model's work); a problem with
the data's structure (not an image tensor, shapes that differ) is carried back
as :attr:`Batch.problem` and raised in the main process as an
:class:`~attribkit.errors.InputError`, not as a worker's traceback.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from attribkit.datasets import targets as T
from attribkit.datasets.folder import ImageFolder, Unreadable
from attribkit.errors import InputError, TargetError

ITEM_FORMS = ("an image tensor (C, H, W), or a tuple (image,), (image, label), (image, label, mask), "
              + T.ITEM_TARGET_FORMS)


@dataclasses.dataclass
class Batch:
    """Batch ``number`` of the data: rows ``start .. start + size - 1``.

    Attributes:
        images: ``(k, C, H, W)``, the readable rows only (``None`` if none is).
        readable: ``(size,)`` bool, which rows :attr:`images` holds.
        labels: ``(size,)`` int64 (-1 for an unreadable row), or ``None``.
        masks: ``(k, H, W)`` bool evidence of the readable rows, or ``None``.
        errors: why each row could not be read, ``""`` when it was.
        problem: a structural problem with the data (raised by the caller).
        digests: each row's input digest (:mod:`attribkit.datasets.fingerprint`), when asked for.
        target: the ``Box`` or ``Region`` of the readable rows, when the items carry targets
            or ``target=ak.per_item(fn)`` makes them (:mod:`attribkit.datasets.targets`).
    """

    number: int
    start: int
    size: int
    images: torch.Tensor | None = None
    readable: np.ndarray | None = None
    labels: np.ndarray | None = None
    masks: torch.Tensor | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    problem: str | None = None
    digests: list[str] | None = None
    target: Any = None


@dataclasses.dataclass(frozen=True)
class Item:
    """One parsed item: its image, label, mask and target (``None`` when absent)."""

    image: torch.Tensor
    label: int | None
    mask: torch.Tensor | None
    target: T.ItemTarget | None = None


def parse_item(item: Any, index: int, per_item: T.PerItem | None = None) -> Item | Unreadable:
    """An item of the data as an :class:`Item` (``InputError`` naming the index and the
    forms an item may take), or the :class:`Unreadable` it is; ``per_item``: the function
    that gives the item's target (``target=ak.per_item(fn)``)."""
    if isinstance(item, Unreadable):
        return item
    parts = tuple(item) if isinstance(item, (tuple, list)) else (item,)
    if len(parts) >= 2 and not isinstance(parts[0], Unreadable):
        target_parts = _target_parts(parts, index)
        if target_parts is not None:  # (image, target) or (image, box, label)
            image = parse_item(parts[0], index)
            return dataclasses.replace(image, target=_item_target(item, index, image.image.shape, per_item,
                                                                  target_parts))
    if not 1 <= len(parts) <= 3:
        raise InputError(f"item {index} of the data has {len(parts)} parts; an item is {ITEM_FORMS}")
    image = parts[0]
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        hint = (" (give the dataset a transform that makes tensors, e.g. torchvision.transforms.ToTensor(),"
                " or use attribkit.image_folder)") if type(image).__module__.startswith("PIL") else \
            " (for texts pass tokenizer=: docs/datasets.md, Text datasets)" if isinstance(image, str) else ""
        raise InputError(f"item {index} of the data holds a {type(image).__name__} where an image tensor "
                         f"belongs{hint}; an item is {ITEM_FORMS}")
    if image.ndim != 3:
        raise InputError(f"item {index} of the data is an image of shape {tuple(image.shape)}; an image "
                         "is one (C, H, W) tensor, without a batch dimension")
    label = None
    if len(parts) >= 2:
        label = parts[1]
        if isinstance(label, torch.Tensor) and label.numel() == 1:
            label = label.item()
        if not isinstance(label, numbers.Integral) or isinstance(label, bool):
            raise InputError(f"item {index} of the data has the label {label!r}; a label is one integer class")
        label = int(label)
    mask = None
    if len(parts) == 3:
        mask = torch.as_tensor(parts[2])
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if tuple(mask.shape) != tuple(image.shape[-2:]):
            raise InputError(f"item {index} of the data has a mask of shape {tuple(mask.shape)} for an image "
                             f"of {tuple(image.shape[-2:])}; a mask is (H, W), like the image")
        mask = mask.bool()
    return Item(image, label, mask, _item_target(item, index, image.shape, per_item, None))


def _target_parts(parts: tuple[Any, ...], index: int) -> tuple[Any, Any] | None:
    """``(target, label)`` of an item ``(image, target)`` or ``(image, box, label)``, else ``None``."""
    if T.is_target_part(parts[1]):
        if len(parts) != 2:
            raise InputError(f"item {index} of the data has {len(parts)} parts with a target; an item with "
                             f"its target is {T.ITEM_TARGET_FORMS}")
        return parts[1], None
    if len(parts) == 3 and T.is_box_tensor(parts[1]):
        return parts[1], parts[2]
    return None


def _item_target(item: Any, index: int, shape: Any, per_item: T.PerItem | None,
                 parts: tuple[Any, Any] | None) -> T.ItemTarget | None:
    """The item's target: ``per_item.fn(item)`` when given, else the one the item carries."""
    if per_item is not None:
        return T.item_target(per_item.fn(item), index, shape)
    return None if parts is None else T.item_target(parts[0], index, shape, label=parts[1])


class Indexed(torch.utils.data.Dataset):
    """``dataset[i]`` as ``(i, dataset[i])``, so that a batch knows its rows.

    The DataLoader fetches a batch's items in one :meth:`__getitems__` call: a
    ``TensorDataset``'s batch is then sliced from its tensors (:class:`Stacked`)
    instead of taken item by item and stacked again."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[int, Any]] | Stacked:
        """The items of a batch (``indices``: consecutive rows)."""
        stacked = Stacked.of(self.dataset, indices)
        return stacked if stacked is not None else [(i, self.dataset[i]) for i in indices]


@dataclasses.dataclass
class Stacked:
    """Rows ``start .. start + size - 1`` of a ``TensorDataset``: its tensors sliced."""

    start: int
    size: int
    parts: tuple[torch.Tensor, ...]

    @staticmethod
    def of(dataset: Any, indices: Sequence[int]) -> Stacked | None:
        """The rows ``indices`` of ``dataset`` sliced, or ``None`` unless it is a plain
        ``TensorDataset`` and ``indices`` are consecutive."""
        if type(dataset) is not torch.utils.data.TensorDataset or not len(indices) or \
                list(indices) != list(range(indices[0], indices[0] + len(indices))):
            return None
        rows = slice(indices[0], indices[0] + len(indices))
        # a worker sends its batch to the main process: a copy, not a view of the whole tensor
        copy = torch.utils.data.get_worker_info() is not None
        parts = tuple(t[rows].clone() if copy else t[rows] for t in dataset.tensors)
        return Stacked(indices[0], len(indices), parts)

    def items(self) -> list[tuple[int, Any]]:
        """The rows as ``(index, item)`` pairs, as ``dataset[i]`` gives them."""
        return [(self.start + k, tuple(part[k] for part in self.parts)) for k in range(self.size)]

    def parsed(self) -> tuple[torch.Tensor, np.ndarray | None, torch.Tensor | None] | None:
        """``(images, labels, masks)`` of the rows when every row is a well-formed item
        (what :func:`parse_item` accepts), else ``None`` (then parse them one by one)."""
        parts = self.parts
        if not 1 <= len(parts) <= 3 or parts[0].ndim != 4:
            return None
        images, labels, masks = parts[0], None, None
        if len(parts) >= 2:
            label = parts[1]
            if label.dtype.is_floating_point or label.dtype.is_complex or label.dtype == torch.bool or \
                    label.numel() != self.size:
                return None
            labels = label.reshape(self.size).numpy().astype(np.int64)
        if len(parts) == 3:
            mask = parts[2]
            if mask.ndim == 4 and mask.shape[1] == 1:
                mask = mask[:, 0]
            if tuple(mask.shape[1:]) != tuple(images.shape[-2:]) or mask.ndim != 3:
                return None
            masks = mask.bool()
        return images, labels, masks


class Collate:
    """Make a :class:`Batch` of ``[(index, item), ...]`` (picklable, for workers), with its
    rows' input digests when ``digests``."""

    def __init__(self, batch_size: int, digests: bool = False, per_item: T.PerItem | None = None) -> None:
        self.batch_size, self.digests, self.per_item = batch_size, digests, per_item

    def __call__(self, pairs: Sequence[tuple[int, Any]] | Stacked) -> Batch:
        batch = self._collate(pairs)
        if self.digests and batch.problem is None:
            from attribkit.datasets.fingerprint import item_digests

            batch.digests = item_digests(batch)
        return batch

    def _collate(self, pairs: Sequence[tuple[int, Any]] | Stacked) -> Batch:
        if isinstance(pairs, Stacked):
            parsed = pairs.parsed() if self.per_item is None else None
            if parsed is not None:
                batch = Batch(number=pairs.start // self.batch_size, start=pairs.start, size=pairs.size,
                              errors=[""] * pairs.size, readable=np.ones(pairs.size, dtype=bool))
                batch.images, batch.labels, batch.masks = parsed
                return batch
            pairs = pairs.items()
        indices = [i for i, _ in pairs]
        batch = Batch(number=indices[0] // self.batch_size, start=indices[0], size=len(pairs))
        try:
            parsed = [parse_item(item, i, self.per_item) for i, item in pairs]
            readable = [p for p in parsed if isinstance(p, Item)]
            batch.errors = [p.reason if isinstance(p, Unreadable) else "" for p in parsed]
            batch.readable = np.array([isinstance(p, Item) for p in parsed])
            if readable:
                shapes = {tuple(p.image.shape) for p in readable}
                if len(shapes) > 1:
                    raise InputError(f"the images of batch {batch.number} have different shapes "
                                     f"({', '.join(map(str, sorted(shapes)))}); resize them to one size in "
                                     "the dataset (attribkit.image_folder(size=...) does)")
                batch.images = torch.stack([p.image for p in readable])
                if any(p.mask is not None for p in readable):
                    if not all(p.mask is not None for p in readable):
                        raise InputError(f"some items of batch {batch.number} have a mask and others not")
                    batch.masks = torch.stack([p.mask for p in readable])
                if any(p.target is not None for p in readable):
                    if not all(p.target is not None for p in readable):
                        raise InputError(f"some items of batch {batch.number} have a target and others not")
                    batch.target = T.batch_target([p.target for p in readable], batch.number)
            if any(p.label is not None for p in readable):
                batch.labels = np.array([p.label if isinstance(p, Item) and p.label is not None else -1
                                         for p in parsed], dtype=np.int64)
        except (InputError, TargetError) as exc:
            batch.problem = str(exc)
        return batch


def first_readable(dataset: Any, limit: int = 1000, per_item: T.PerItem | None = None) -> tuple[int, Item]:
    """The index and parsed form of the first readable item (of the first ``limit``)."""
    reasons = []
    for index in range(min(len(dataset), limit)):
        parsed = parse_item(dataset[index], index, per_item)
        if isinstance(parsed, Item):
            return index, parsed
        reasons.append(parsed.reason)
    if not len(dataset):
        raise InputError("the data has no items")
    raise InputError(f"none of the first {len(reasons)} items of the data can be read "
                     f"(item 0: {reasons[0]})")


def unwrap(data: Any, batch_size: int | None, num_workers: int | None) -> tuple[Any, int, int]:
    """``(dataset, batch_size, num_workers)`` of a ``Dataset`` or a ``DataLoader``
    (the loader's own batch size and workers unless given). A shuffling loader is
    refused: rows are stored in the dataset's order, so that a run can resume."""
    loader = torch.utils.data.DataLoader
    if isinstance(data, loader):
        if not isinstance(data.sampler, torch.utils.data.SequentialSampler):
            raise InputError(f"the DataLoader draws items with a {type(data.sampler).__name__}; explain_dataset "
                             "stores rows in the dataset's order: pass a loader without shuffle or a "
                             "sampler, or the dataset itself")
        batch_size = batch_size or data.batch_size
        num_workers = data.num_workers if num_workers is None else num_workers
        data = data.dataset
    if isinstance(data, torch.utils.data.IterableDataset) or not hasattr(data, "__getitem__") \
            or not hasattr(data, "__len__"):
        raise InputError(f"data must be a map-style torch Dataset (len() and [i]) or a DataLoader over "
                         f"one, got {type(data).__name__}")
    batch_size = 64 if batch_size is None else batch_size
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    num_workers = 0 if num_workers is None else num_workers
    if not isinstance(num_workers, numbers.Integral) or num_workers < 0:
        raise InputError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    return data, int(batch_size), int(num_workers)


def item_ids(dataset: Any) -> tuple[np.ndarray, list[str] | None, list[tuple[str, str]]]:
    """``(ids, class names, skipped files)``: relative file paths for an
    :class:`~attribkit.datasets.folder.ImageFolder` (or torchvision's folder
    datasets, by their ``samples``), indices otherwise."""
    if isinstance(dataset, ImageFolder):
        return np.array(dataset.ids, dtype=object), dataset.classes, list(dataset.skipped)
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, list) and len(samples) == len(dataset) and samples and \
            isinstance(samples[0], tuple):
        return (np.array([str(path) for path, *_ in samples], dtype=object),
                list(getattr(dataset, "classes", None) or []) or None, [])
    return np.arange(len(dataset), dtype=np.int64), list(getattr(dataset, "classes", None) or []) or None, []


def batches(dataset: Any, numbers_: Sequence[int], batch_size: int, num_workers: int,
            pin_memory: bool, digests: bool = False, target: Any = None) -> torch.utils.data.DataLoader:
    """A loader of the :class:`Batch` es ``numbers_`` (in that order), with their rows'
    input digests when ``digests`` (computed by the loader's workers); ``target``: the
    run's target (an ``ak.per_item(fn)`` makes each item's target)."""
    n = len(dataset)
    plan = [list(range(b * batch_size, min(n, (b + 1) * batch_size))) for b in numbers_]
    return torch.utils.data.DataLoader(
        Indexed(dataset), batch_sampler=plan, num_workers=num_workers, collate_fn=Collate(batch_size, digests, target if isinstance(target, T.PerItem) else None),
        pin_memory=pin_memory, prefetch_factor=2 if num_workers else None)
