"""``segmentation``: the synthetic scenes segmented, and a small fully-convolutional net.

Each 64x64 scene (:func:`attribkit.bench.scenes.make_scenes`) holds one class pattern
among distractors; :class:`~attribkit.bench.segmenter.SceneFCN` labels every pixel with
the pattern's class + 1 (background 0), trained on 2,000 scenes. Each image is
explained for ``ak.Region(class, mask=box)``: the pattern class's logits summed inside
its box, the box being the evidence the localisation metrics score. The CAM methods
explain :data:`LAYER`.
"""

from __future__ import annotations

import torch

from attribkit.bench.scenes import make_scenes
from attribkit.bench.segmenter import SegTrainConfig, segmentation_model
from attribkit.bench.tasks.base import ReferenceTask, TaskData
from attribkit.targets import Region

#: the CAM methods' layer: the last feature block (stride 4), before the 1x1 classifier
#: (the automatic choice, the last spatial layer, is that classifier: one channel per class)
LAYER = "features"

def draw(config: SegTrainConfig, n: int) -> TaskData:
    """``n`` scenes drawn from ``config.seed + 20_000``, each with its ``Region`` target."""
    scenes = make_scenes(n, size=config.size, classes=config.classes, seed=config.seed + 20_000)
    labels, masks = torch.from_numpy(scenes.labels), torch.from_numpy(scenes.masks)
    return TaskData(torch.from_numpy(scenes.images), labels, masks, scenes.class_names,
                    target=Region(labels, mask=masks), layer=LAYER)


TASK = ReferenceTask(
    name="segmentation", description="synthetic scenes, per-pixel classes + a small FCN (target: ak.Region)",
    config=SegTrainConfig(), trained=segmentation_model, draw=draw, evidence="the pattern's box")
