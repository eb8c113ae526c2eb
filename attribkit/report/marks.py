"""What each image's map explained, drawn into the store report's pictures: the target box
(outline) or the region mask (outline) that ``explain_dataset`` stored
(:mod:`attribkit.datasets.targets`), labelled with the explained class.

The marks are drawn into the picture itself (the JPEG thumbnail), so they show in the
picture cell, in every method's map blended over it, and in the large view; without
pictures the row's facts give the box in numbers. The same colour as ``ak.show``'s
(:data:`attribkit.viz.overlays.MARK_COLOUR`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from attribkit.datasets.store import AttributionStore
from attribkit.viz.overlays import MARK_COLOUR

MARK_RGB = tuple(int(MARK_COLOUR[i:i + 2], 16) for i in (1, 3, 5))


@dataclasses.dataclass
class RowMarks:
    """One row's target, in the pixels of a ``size`` x ``size`` picture: a box
    ``(x1, y1, x2, y2)`` or a bool mask ``(size, size)``, and the label drawn beside it."""

    box: tuple[float, float, float, float] | None
    mask: np.ndarray | None
    label: str

    def facts(self, image_shape: Sequence[int], size: int) -> str:
        """The target in words for the row's facts: the box in input pixels."""
        if self.box is None:
            return "explained region outlined" if self.mask is not None else ""
        h, w = int(image_shape[-2]), int(image_shape[-1])
        x1, y1, x2, y2 = (v * s / size for v, s in zip(self.box, (w, h, w, h)))
        return f"explained box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})"


def store_marks(store: AttributionStore, rows: np.ndarray, size: int,
                name: Callable[[int], str]) -> dict[int, RowMarks]:
    """The marks of ``rows`` (row -> :class:`RowMarks`), from the store's ``boxes`` or
    ``regions`` (empty when it has neither); ``name`` names an explained class."""
    boxes, regions, targets = store.boxes, store.regions, store.targets
    if boxes is None and regions is None:
        return {}
    shape = store.settings.get("image_shape") or [size, size]
    h, w = int(shape[-2]), int(shape[-1])
    found = {}
    for r in (int(r) for r in rows):
        label = name(int(targets[r])) if targets is not None and int(targets[r]) >= 0 else ""
        if boxes is not None and np.isfinite(boxes[r]).all():
            x1, y1, x2, y2 = (float(v) * s for v, s in zip(boxes[r], (size / w, size / h, size / w, size / h)))
            found[r] = RowMarks((x1, y1, x2, y2), None, label)
        elif regions is not None and regions[r].any():
            found[r] = RowMarks(None, nearest(regions[r], size), label)
    return found


def nearest(mask: np.ndarray, size: int) -> np.ndarray:
    """A bool mask resized to ``size`` x ``size``: the nearest cell to each pixel's centre."""
    h, w = mask.shape
    rows = np.minimum(((np.arange(size) + 0.5) * h / size).astype(int), h - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * w / size).astype(int), w - 1)
    return mask[rows[:, None], cols[None, :]]


def outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The pixels of ``mask`` within ``width`` 4-neighbour steps of a pixel outside it (or of
    the picture's border): the mask minus ``width`` erosions by the 4-neighbour cross."""
    inner = mask
    for _ in range(width):
        m = np.pad(inner, 1)
        inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask & ~inner


def draw(picture: np.ndarray, marks: RowMarks | None) -> np.ndarray:
    """``picture`` (``(size, size, 3)`` in ``[0, 1]``) with the box's outline (2 px inside the
    rectangle of pixels from ``floor(x1)`` to ``ceil(x2) - 1``) or the mask's outline (2 px,
    :func:`outline`), and the label on a filled tag on the top-left corner (above the mark,
    inside it where there is no room above); a copy.
    Lines are 2 px: a JPEG's colour is stored at half resolution, and washes out a 1-px line."""
    if marks is None:
        return picture
    from PIL import Image, ImageDraw

    image = Image.fromarray((np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8))
    pen = ImageDraw.Draw(image)
    colour = MARK_RGB
    if marks.box is not None:
        x1, y1 = int(np.floor(marks.box[0])), int(np.floor(marks.box[1]))
        x2, y2 = int(np.ceil(marks.box[2])) - 1, int(np.ceil(marks.box[3])) - 1
        pen.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=2)
        corner = (x1 + 2, y1 + 2)
    else:
        out = np.asarray(image).copy()
        out[outline(marks.mask)] = colour
        image = Image.fromarray(out)
        pen = ImageDraw.Draw(image)
        ys, xs = np.nonzero(marks.mask)
        corner = (int(xs.min()) + 2, int(ys.min()) + 2)
    if marks.label:
        left, top, right, bottom = pen.textbbox((0, 0), marks.label)
        above = corner[1] - 2 - (bottom + 2)  # the tag's top when it sits on the mark's top edge
        corner = (corner[0] - 2, above) if above >= 0 else corner
        left, top, right, bottom = pen.textbbox(corner, marks.label)
        pen.rectangle((left - 1, top - 1, right, bottom), fill=colour)
        pen.text(corner, marks.label, fill=(0, 0, 0))
    return np.asarray(image, dtype=np.float32) / 255.0
