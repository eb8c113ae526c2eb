"""Target objects: what scalar per image a method explains, read from any model output.

``Class(c)`` (a classifier's logit, the meaning of a plain int), ``Labels([...])``
(multi-label sigmoid scores, one map per label), ``Region(cls, mask)`` (segmentation),
``Box(box, label)`` (detection, matched in every forward), ``Similarity(vector)``
(embeddings, CLIP). Plain targets keep working: ``None``, an int, one int per image, a
callable ``raw_output -> (B,)``. See :mod:`attribkit.targets.base` for the protocol a
new target implements, and ``docs/tasks.md`` for one example per task.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Target": "base", "describe": "base", "Box": "boxes", "box_iou": "boxes",
    "Class": "classes", "Labels": "classes", "image_tower": "clip",
    "Similarity": "embeddings", "Region": "regions",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # lazy, so attribkit.targets.rows needs no torch
    if name not in _EXPORTS:
        raise AttributeError(f"module 'attribkit.targets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"attribkit.targets.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
