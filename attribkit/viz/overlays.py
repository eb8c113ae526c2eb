"""What a map explained, drawn on it: the boxes of a ``Box`` target and the outline of a
``Region``'s mask, with the explained label.

:func:`marks_of` reads them from a result (``result.meta["target"]``, the bound target
:func:`attribkit.explain` records: one box / mask / class per row) as plain
:class:`Marks`, one per row, in input pixels; :func:`draw_marks` draws one row's on a
matplotlib axes (a ``Rectangle`` patch per box, a ``LineCollection`` of the mask's
pixel edges, a ``Text`` per label); :func:`mask_edges` is the outline as segments. The
store report draws the same marks into its pictures (:mod:`attribkit.report.marks`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from attribkit.images import class_label

#: the colour of boxes, outlines and labels (Okabe and Ito's bluish green: visible on the
#: inferno and RdBu heat maps alike)
MARK_COLOUR = "#00e0a0"


@dataclasses.dataclass
class Marks:
    """One row's marks, in input pixels.

    Attributes:
        boxes: ``(K, 4)`` x1y1x2y2 boxes (``K`` is 0 or 1 for a row of ``explain``).
        labels: the class of each box, or of the region (``None`` where unknown).
        mask: ``(H, W)`` bool region, or ``None``.
    """

    boxes: np.ndarray
    labels: list[int | None]
    mask: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        """Whether there is nothing to draw."""
        return not len(self.boxes) and self.mask is None


def marks_of(result: Any, rows: int) -> list[Marks | None]:
    """Each of ``rows`` rows' :class:`Marks` from ``result.meta["target"]`` (a bound ``Box``
    or ``Region``); ``None`` for every row when the result has no such target."""
    meta = getattr(result, "meta", None)
    target = meta.get("target") if isinstance(meta, dict) else None
    found: list[Marks | None] = [None] * rows
    if target is None or not getattr(target, "bound", False):
        return found
    from attribkit.targets import Box, Region  # loaded already: the result holds one of its targets

    if isinstance(target, Box) and not target.several and len(target.boxes) == rows:
        b = np.asarray(target.boxes.detach().cpu(), dtype=np.float64)
        return [Marks(b[i:i + 1], [int(target.box_labels[i])]) for i in range(rows)]
    if isinstance(target, Region) and len(target.classes) == rows:
        masks = None if target.mask is None else np.asarray(target.mask.detach().cpu()) != 0
        return [Marks(np.zeros((0, 4)), [int(target.classes[i])], None if masks is None else masks[i])
                for i in range(rows)]
    return found


def mask_edges(mask: np.ndarray) -> np.ndarray:
    """The outline of a bool ``(H, W)`` mask as ``(K, 2, 2)`` segments ``[[x0, y0], [x1, y1]]``
    along pixel edges (pixel ``(i, j)`` spans ``x`` in ``[j, j + 1]``, ``y`` in ``[i, i + 1]``):
    one segment per edge between a pixel inside and one outside (or the border)."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    vertical = m[1:-1, 1:] != m[1:-1, :-1]  # (H, W + 1): edge left of column j
    horizontal = m[1:, 1:-1] != m[:-1, 1:-1]  # (H + 1, W): edge above row i
    iy, jx = np.nonzero(vertical)
    v = np.stack([np.stack([jx, iy], 1), np.stack([jx, iy + 1], 1)], 1)
    iy, jx = np.nonzero(horizontal)
    h = np.stack([np.stack([jx, iy], 1), np.stack([jx + 1, iy], 1)], 1)
    return np.concatenate([v, h]).astype(np.float64)


def label_text(label: int | None, names: Any) -> str:
    """The label drawn beside a mark: the class name when ``names`` has it, else its number."""
    if label is None:
        return ""
    text = class_label(label, names)
    return str(label) if text == f"class {int(label)}" else text


def draw_marks(ax: Any, marks: Marks | None, names: Any = None, *, size: tuple[int, int],
               input_size: tuple[int, int] | None = None) -> None:
    """Draw ``marks`` on ``ax``, an ``imshow`` axes of a ``size`` ``(H, W)`` picture (pixel
    centres at integers): each box as an outlined ``Rectangle``, the mask's outline as a
    ``LineCollection``, and the label as a ``Text`` at the box's top-left corner, above it
    (inside when the corner is in the picture's top tenth; the region's top-left for a mask). Boxes are in pixels of an ``input_size`` input (default:
    ``size``); a mask of another size than ``size`` is stretched to it."""
    if marks is None or marks.empty:
        return
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    h_in, w_in = input_size or size
    sy, sx = size[0] / h_in, size[1] / w_in
    for (x1, y1, x2, y2), label in zip(marks.boxes, marks.labels):
        ax.add_patch(Rectangle((x1 * sx - 0.5, y1 * sy - 0.5), (x2 - x1) * sx, (y2 - y1) * sy, fill=False,
                               edgecolor=MARK_COLOUR, linewidth=1.5, label="target box"))
        _label(ax, x1 * sx - 0.5, y1 * sy - 0.5, label_text(label, names), size[0])
    if marks.mask is not None:
        segments = mask_edges(marks.mask)
        sy, sx = size[0] / marks.mask.shape[0], size[1] / marks.mask.shape[1]
        if len(segments):
            drawn = segments * np.array([sx, sy]) - 0.5
            ax.add_collection(LineCollection(drawn, colors=MARK_COLOUR, linewidths=1.2, label="target region"),
                             autolim=False)
            rows, cols = np.nonzero(marks.mask)
            _label(ax, cols.min() * sx - 0.5, rows.min() * sy - 0.5,
                   label_text(marks.labels[0] if marks.labels else None, names), size[0])


def _label(ax: Any, x: float, y: float, text: str, height: int) -> None:
    """The label on a tag above the corner ``(x, y)``, or below it (inside the mark) when the
    corner is in the picture's top tenth."""
    if text:
        ax.text(x, y, text, color="black", fontsize=7, va="bottom" if y > 0.1 * height else "top",
                ha="left", clip_on=True, bbox=dict(facecolor=MARK_COLOUR, edgecolor="none", pad=1.0, alpha=0.85))


__all__ = ["MARK_COLOUR", "Marks", "draw_marks", "label_text", "marks_of", "mask_edges"]
