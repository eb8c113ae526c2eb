"""Target objects: what scalar per image a method explains, read from any model output.

``Class(c)`` (a classifier's logit, the meaning of a plain int), ``Labels([...])``
(multi-label sigmoid scores, one map per label), ``Region(cls, mask)`` (segmentation),
``Box(box, label)`` (detection, matched in every forward), ``Similarity(vector)``
(embeddings, CLIP). Plain targets keep working: ``None``, an int, one int per image, a
callable ``raw_output -> (B,)``. See :mod:`attribkit.targets.base` for the protocol a
new target implements, and ``docs/tasks.md`` for one example per task.
"""

from attribkit.targets.base import Target, describe
from attribkit.targets.boxes import Box, box_iou
from attribkit.targets.classes import Class, Labels
from attribkit.targets.clip import image_tower
from attribkit.targets.embeddings import Similarity
from attribkit.targets.regions import Region

__all__ = ["Box", "Class", "Labels", "Region", "Similarity", "Target", "box_iou", "describe", "image_tower"]
