"""``detection``: the synthetic scenes as boxes, and a small torchvision FCOS.

Each 64x64 scene (:func:`attribkit.bench.scenes.make_scenes`) holds one class pattern
among distractors; the detector (:func:`attribkit.bench.detector.build_detector`,
torchvision's FCOS on a tiny backbone) is trained on 2,000 scenes' boxes. Each image is
explained for ``ak.Box(box, label)`` of its pattern: the detection matched to the true
box in every forward (IoU + score, pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``), the
box being the evidence the localisation metrics score. The CAM methods explain
:data:`LAYER`.
"""

from __future__ import annotations

import torch

from attribkit.bench.detector import DetTrainConfig, detection_model
from attribkit.bench.scenes import make_scenes
from attribkit.bench.tasks.base import ReferenceTask, TaskData
from attribkit.targets import Box

#: the CAM methods' layer: the classification head's conv tower (stride 4, after GroupNorm and
#: ReLU), the last feature map before the class logits, as a classifier's last conv block
#: (the automatic choice, the last spatial layer on the path to the score, is the one-channel
#: centre-ness output)
LAYER = "head.classification_head.conv"

def draw(config: DetTrainConfig, n: int) -> TaskData:
    """``n`` scenes drawn from ``config.seed + 20_000``, each with its ``Box`` target."""
    scenes = make_scenes(n, size=config.size, classes=config.classes, seed=config.seed + 20_000)
    labels = torch.from_numpy(scenes.labels)
    return TaskData(torch.from_numpy(scenes.images), labels, torch.from_numpy(scenes.masks), scenes.class_names,
                    target=Box(torch.from_numpy(scenes.boxes), labels), layer=LAYER)


TASK = ReferenceTask(
    name="detection", description="synthetic scenes, boxes + a small torchvision FCOS (target: ak.Box)",
    config=DetTrainConfig(), trained=detection_model, draw=draw, evidence="the pattern's box")
