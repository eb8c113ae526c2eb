"""CLIP's image tower as a module of its own, to explain for a text embedding.

A CLIP model embeds images and texts; :class:`~attribkit.targets.Similarity` explains
the image side for a text embedding (``Similarity(text_embedding)``), which needs a
model whose forward takes the images alone and returns the image embedding:

* open_clip: ``model.visual`` already is that module;
* Hugging Face: ``CLIPVisionModelWithProjection`` (its output's ``image_embeds``) is;
  a full ``CLIPModel`` is not (its forward needs the text too), and
  :func:`image_tower` gives the module made of its own ``vision_model`` and
  ``visual_projection``: the same weights, nothing copied, layer names unchanged
  (``"vision_model.encoder.layers.1"``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attribkit.errors import TargetError


class ImageTower(nn.Module):
    """A Hugging Face ``CLIPModel``'s image side: ``visual_projection(vision_model(x).pooler_output)``,
    the ``(B, D)`` embedding of ``CLIPModel.get_image_features``."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.vision_model = clip.vision_model
        self.visual_projection = clip.visual_projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(self.vision_model(pixel_values=pixel_values).pooler_output)


def image_tower(model: Any) -> nn.Module:
    """The module that maps images to CLIP image embeddings, for ``Similarity``:
    open_clip's ``model.visual``, a Hugging Face ``CLIPModel``'s :class:`ImageTower`, a
    Hugging Face ``CLIPVisionModelWithProjection`` itself; ``TargetError`` for anything else."""
    if isinstance(getattr(model, "visual", None), nn.Module):
        return model.visual
    if hasattr(model, "vision_model") and hasattr(model, "visual_projection"):
        if hasattr(model, "text_model"):
            return ImageTower(model)
        return model
    raise TargetError(f"image_tower takes an open_clip CLIP model (with .visual) or a Hugging Face "
                      f"CLIPModel / CLIPVisionModelWithProjection; got {type(model).__name__}. "
                      "Any module images -> (B, D) embeddings works with Similarity as it is")
