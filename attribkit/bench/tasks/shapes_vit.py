"""``shapes-vit``: synthetic scenes and the reference ViT, for the attention family.

The scenes of :mod:`attribkit.bench.tasks.shapes` (at 32x32, drawn the same
way) and a small timm ``VisionTransformer`` trained on them
(:mod:`attribkit.bench.vit_reference`).
"""

from __future__ import annotations

from attribkit.bench.tasks.base import ReferenceTask
from attribkit.bench.tasks.shapes import draw
from attribkit.bench.vit_reference import ViTTrainConfig, vit_reference_model

TASK = ReferenceTask(
    name="shapes-vit", description="synthetic scenes + the reference ViT (timm, for the attention family)",
    config=ViTTrainConfig(), trained=vit_reference_model, draw=draw, evidence="the pattern's box")
