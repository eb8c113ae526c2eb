"""The forward Captum differentiates when the target is not a plain class index.

Captum takes an int / tensor ``target`` indexing a ``(B, classes)`` output, or a forward
that returns one scalar per row with ``target=None`` (its issues #343 and #708: "only
a scalar output"). :class:`TargetHead` is that forward: the model followed by the
target's selection, for callable targets, for target objects of :mod:`attribkit.targets`
(``Region``, ``Box``, ``Similarity``, ``Labels``, ``Class``: they read dicts, lists of
per-image dicts, tuples and Hugging Face outputs) and, with class indices, for the
Captum classes that fail with per-image class targets.

Rows: Captum forwards ``k`` copies of the images it was given, copy-major (integrated
gradients' steps, DeepLift's input and baseline, occlusion's ``perturbations_per_eval``
batches: ``torch.cat`` of whole copies), so row ``r`` is a copy of image ``r % n``. The
adapter calls Captum on a whole chunk or, for stochastic methods, on one image at a
time (:meth:`TargetHead.use_images`); then every row is a copy of that image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attribkit.errors import TargetError
from attribkit.torch.targets import ChunkTarget


class TargetHead(nn.Module):
    """``model`` followed by target selection: one scalar per row.

    ``images``: how many images of the chunk Captum was given (the rows of one copy);
    ``indices``: per-image class indices (``None`` for callable targets and target
    objects, which select themselves).
    """

    def __init__(self, model: Any, target: ChunkTarget, indices: torch.Tensor | None,
                 images: int) -> None:
        super().__init__()
        if isinstance(model, nn.Module):
            self.model = model
        else:
            self._forward = model
        self.target = target
        self.indices = indices
        self.chunk_images = images
        self.images = torch.arange(images)

    def use_images(self, image: int | None) -> None:
        """The rows of the next calls are copies of chunk image ``image`` (``None``: of
        all the chunk's images, copy-major)."""
        self.images = torch.arange(self.chunk_images) if image is None else torch.tensor([image])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.model(x) if "model" in self._modules else self._forward(x)
        if self.target.is_callable:
            return self.target.select(scores)
        images = self.row_images(len(x))
        if self.target.is_object:
            return self.target.select_rows(scores, images)
        indices = self.indices.to(scores.device)[images.to(scores.device)]
        return scores.gather(1, indices[:, None]).squeeze(1)

    def row_images(self, rows: int) -> torch.Tensor:
        """The chunk image each of ``rows`` forwarded rows is a copy of."""
        n = len(self.images)
        if rows % n:
            raise TargetError(f"internal error: Captum forwarded {rows} rows, not whole copies of "
                              f"the {n} images it was given")
        return self.images.repeat(rows // n)
