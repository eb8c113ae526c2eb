"""The synthetic scenes as segmentation and detection data: per-pixel classes and boxes.

:func:`attribkit.bench.synthetic.make_dataset` places one class pattern per scene and
records its box as the evidence mask. :func:`make_scenes` adds what a segmentation
network and a detector train on and are explained for: the pattern's pixels labelled
with its class (``label = class + 1``, background 0: the template's pixels inside the
box, :data:`~attribkit.bench.synthetic.TEMPLATES`) and its box ``x1y1x2y2`` in pixel
edges. Pure NumPy, deterministic from the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from attribkit.bench.synthetic import TEMPLATES, make_dataset

BACKGROUND = "background"


@dataclasses.dataclass
class SceneData:
    """``images`` ``(N, 3, H, W)`` float32; ``labels`` ``(N,)`` int64, the pattern's class
    + 1 (0 is the background); ``masks`` ``(N, H, W)`` bool, the pattern's box (the
    evidence); ``segments`` ``(N, H, W)`` int64, the class + 1 of each pattern pixel, 0
    elsewhere; ``boxes`` ``(N, 4)`` float32 ``x1y1x2y2`` (pixel edges: the box covers
    columns ``x1..x2-1``); ``class_names`` with ``"background"`` first."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    segments: np.ndarray
    boxes: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def make_scenes(n: int, *, size: int = 64, classes: int = 6, seed: int = 0) -> SceneData:
    """``n`` scenes of :func:`~attribkit.bench.synthetic.make_dataset` (same ``size``,
    ``classes`` and ``seed``, so the same images) with their segments and boxes."""
    data = make_dataset(n, size=size, classes=classes, seed=seed)
    segments = np.zeros(data.masks.shape, np.int64)
    boxes = np.zeros((n, 4), np.float32)
    for i, (mask, label) in enumerate(zip(data.masks, data.labels)):
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        top, left = rows[0], cols[0]
        template = TEMPLATES[data.class_names[label]]
        s = template.shape[0]
        segments[i, top:top + s, left:left + s][template] = label + 1
        boxes[i] = (left, top, cols[-1] + 1, rows[-1] + 1)
    return SceneData(data.images, data.labels + 1, data.masks, segments, boxes,
                     (BACKGROUND, *data.class_names))
