"""The pictures of the store report: where they come from (the image folder the run
recorded, or a dataset, tensor or array), cut as the model saw them."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from attribkit.datasets.folder import id_path
from attribkit.datasets.store import AttributionStore
from attribkit.errors import InputError

Picture = Callable[[int], "np.ndarray | None"]  # row -> (size, size, 3) float in [0, 1], or None


def picture_source(store: AttributionStore, images: Any, size: int) -> Picture | None:
    """A function row -> the ``(size, size, 3)`` picture the model saw, or ``None`` when
    there is no source of pictures (see :func:`store_report`'s ``images``)."""
    ids = store.ids
    shape = store.settings.get("image_shape") or [3, size, size]
    side = int(shape[-1])
    folder = store.meta.get("images") or {}
    crop = bool(folder.get("crop", True))
    if images is None and folder.get("root") and Path(folder["root"]).is_dir():
        images = folder["root"]
    if images is None:
        return None
    if isinstance(images, (str, Path)):
        root = Path(images)
        if not root.is_dir():
            raise FileNotFoundError(2, "no such folder of images", str(root))
        if ids.dtype.kind in "iu":
            raise InputError(f"{store.path} was made from a dataset, not an image folder: pass its images "
                             "(the dataset, or a tensor) in Python, e.g. ak.write_report(store, images=dataset)")

        def from_folder(row: int) -> np.ndarray | None:
            try:
                return folder_picture(id_path(root, str(ids[row])), side, size, crop=crop)
            except OSError as exc:
                warnings.warn(f"report: cannot read {root / str(ids[row])}: {exc}", stacklevel=2)
                return None

        return from_folder
    if not hasattr(images, "__getitem__"):
        raise TypeError(f"images must be a folder, a dataset, a tensor or an array; got {type(images).__name__}")

    def from_items(row: int) -> np.ndarray | None:
        index = int(ids[row]) if ids.dtype.kind in "iu" else row
        item = images[index]
        if isinstance(item, (tuple, list)):
            item = item[0]
        return resized(item_picture(item), size)

    return from_items


def folder_picture(path: Path, side: int, size: int, *, crop: bool = True) -> np.ndarray:
    """The part of the image file that the model saw as a ``side`` x ``side`` input
    (the centre crop after resizing the shorter side to ``side * 256 / 224``, as
    :func:`attribkit.images.to_input`; ``crop=False``: the whole image), at ``size`` px."""
    from PIL import Image

    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    w, h = picture.size
    box = (0.0, 0.0, float(w), float(h))
    if crop:
        c = side * min(w, h) / round(side * 256 / 224)  # the crop's side in the original's pixels
        box = ((w - c) / 2, (h - c) / 2, (w + c) / 2, (h + c) / 2)
    small = picture.resize((size, size), Image.Resampling.LANCZOS, box=box)
    return np.asarray(small, dtype=np.float32) / 255.0


def item_picture(item: Any) -> np.ndarray:
    """One dataset item's image (a tensor or array, CHW or HWC) as ``(H, W, 3)`` in ``[0, 1]``."""
    from attribkit.images import as_numpy, to_display

    array = as_numpy(item)
    return to_display(array[None] if array.ndim == 3 else array)[0]


def resized(picture: np.ndarray, size: int) -> np.ndarray:
    """``picture`` (``(H, W, 3)`` in ``[0, 1]``) resized to ``size`` x ``size``."""
    from PIL import Image

    if picture.shape[:2] == (size, size):
        return picture
    u8 = Image.fromarray((np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(u8.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
