"""Inputs as the methods see them: a list of images, and one row per explained thing.

:func:`attribkit.explain` calls these before the method runs: a list of images of one
size becomes a batch; a target that explains several things per image
(``Labels([3, 7])``, several boxes per image) becomes one row per (image, thing).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from attribkit.errors import InputError


def is_target(target: Any) -> bool:
    """Whether ``target`` is a target object (:class:`attribkit.targets.base.Target`);
    without importing torch: no target object exists before that module is imported."""
    base = sys.modules.get("attribkit.targets.base")
    return base is not None and isinstance(target, base.Target)


def image_list(inputs: Any) -> list | None:
    """The images of a list or tuple of per-image tensors / arrays ``(C, H, W)``, else
    ``None`` (a batch)."""
    if not isinstance(inputs, (list, tuple)) or not inputs:
        return None
    if not all(hasattr(x, "shape") and hasattr(x, "ndim") for x in inputs):
        return None
    bad = [i for i, x in enumerate(inputs) if x.ndim != 3]
    if bad:
        raise InputError(f"a list of images takes (C, H, W) images; image {bad[0]} has shape "
                         f"{tuple(inputs[bad[0]].shape)}")
    return list(inputs)


def same_size(images: Sequence[Any]) -> bool:
    """Whether all images have one shape (then they stack into a batch)."""
    return len({tuple(x.shape) for x in images}) == 1


def stack(images: Sequence[Any]) -> Any:
    """``(B, C, H, W)`` from images of one shape (torch or NumPy, as given)."""
    if all(isinstance(x, np.ndarray) for x in images):
        return np.stack(images)
    import torch

    return torch.stack([torch.as_tensor(x) for x in images])


def per_image_targets(target: Any, n: int) -> list[Any]:
    """``target`` split into one target per image, for images explained one by one."""
    if is_target(target):
        bound = target.bind(n)
        import torch

        return [bound.take(torch.tensor([i])) if not getattr(bound, "several", False)
                else _one_image(bound, i) for i in range(n)]
    if target is None or callable(target) or isinstance(target, (int, np.integer)):
        return [target] * n
    values = list(target)
    if len(values) != n:
        from attribkit.errors import TargetError

        raise TargetError(f"got {len(values)} targets for {n} images")
    return [int(v) for v in values]


def _one_image(bound: Any, i: int) -> Any:
    """A several-boxes-per-image target restricted to image ``i``."""
    import copy

    one = copy.copy(bound)
    one.boxes, one.box_labels = [bound.boxes[i]], [bound.box_labels[i]]
    return one


def expand(inputs: Any, target: Any) -> tuple[Any, Any, Any]:
    """``(inputs, target, image_index)``: one row per explained thing when the target
    explains several per image, with ``image_index`` the image of each row; unchanged
    inputs and ``None`` otherwise."""
    if not is_target(target) or not hasattr(inputs, "shape") or len(inputs.shape) == 0:
        return inputs, target, None
    expanded = target.expand(len(inputs))
    if expanded is None:
        return inputs, target, None
    index, rows = expanded
    if len(index) == 0:
        raise InputError("the target names nothing to explain (no label or box)")
    picked = inputs[index.numpy()] if isinstance(inputs, np.ndarray) else inputs[index.to(inputs.device)]
    return picked, rows, index
