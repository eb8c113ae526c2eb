"""Target selection: which scalar per image a method explains.

``target`` may be ``None`` (each image's top class), an ``int`` (the same class
for all images), a sequence or 1-D integer tensor (one class per image), or a
callable ``scores -> (B,)`` for any other output (multi-output models,
segmentation, a logit difference). The callable must act row by row, since
batches are split into chunks.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from attribkit.errors import TargetError

TargetLike = None | int | Sequence[int] | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def parse_target(target: TargetLike, batch: int) -> torch.Tensor | Callable | None:
    """Validate the target form against the batch size (ranges are checked on the scores)."""
    if target is None or callable(target):
        return target
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        return torch.full((batch,), int(target), dtype=torch.long)
    if isinstance(target, (torch.Tensor, np.ndarray, Sequence)) and not isinstance(target, str):
        t = torch.as_tensor(target)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim != 1 or t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise TargetError(
                f"target must be one integer class per image, got a {tuple(t.shape)} "
                f"{t.dtype} tensor"
            )
        if len(t) != batch:
            raise TargetError(f"got {len(t)} targets for a batch of {batch} inputs")
        return t.long().cpu()
    raise TargetError(
        "target must be None, an int, a sequence or 1-D tensor of ints, or a callable "
        f"scores -> (B,); got {type(target).__name__}"
    )


class ChunkTarget:
    """The target of one chunk of the batch; kernels call :meth:`select` on the scores."""

    def __init__(self, parsed: torch.Tensor | Callable | None) -> None:
        self.parsed = parsed
        self.indices: torch.Tensor | None = None

    @property
    def is_callable(self) -> bool:
        return callable(self.parsed) and not isinstance(self.parsed, torch.Tensor)

    def select(self, scores: torch.Tensor) -> torch.Tensor:
        """One scalar per image: ``scores[i, target[i]]``, or ``target(scores)``."""
        if self.is_callable:
            out = self.parsed(scores)
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (scores.shape[0],):
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise TargetError(
                    f"the target callable must return a ({scores.shape[0]},) tensor, one "
                    f"scalar per image; it returned {shape}"
                )
            return out
        indices = self.indices_for(scores)
        return scores.gather(1, indices[:, None]).squeeze(1)

    def select_rows(self, scores: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Like :meth:`select` for rows that are copies of images: row ``k`` of
        ``scores`` belongs to image ``images[k]`` of the batch (class indices must
        already be known, from :meth:`indices_for` on the unperturbed scores)."""
        if self.is_callable:
            return self.select(scores)
        if self.indices is None:
            raise TargetError("call indices_for(scores) on the unperturbed batch first")
        indices = self.indices.to(scores.device)[images.to(scores.device)]
        return scores.gather(1, indices[:, None]).squeeze(1)

    def indices_for(self, scores: torch.Tensor) -> torch.Tensor:
        """The class index per image (argmax for ``None``), range-checked against ``scores``."""
        if self.is_callable:
            raise TargetError("a callable target has no class indices")
        if scores.ndim != 2:
            raise TargetError(
                f"the model returned scores of shape {tuple(scores.shape)}; class targets need "
                "(B, classes) scores. For other outputs pass target as a callable "
                "scores -> (B,)"
            )
        if self.parsed is None:
            indices = scores.detach().argmax(dim=1)
        else:
            indices = self.parsed.to(scores.device)
            n = scores.shape[1]
            bad = (indices < 0) | (indices >= n)
            if bool(bad.any()):
                raise TargetError(
                    f"target {int(indices[bad][0])} is out of range for a model with {n} "
                    f"outputs (valid: 0..{n - 1})"
                )
        self.indices = indices
        return indices


def chunk(parsed: torch.Tensor | Callable | None, start: int, stop: int) -> ChunkTarget:
    """The :class:`ChunkTarget` for rows ``start:stop`` of the batch."""
    if isinstance(parsed, torch.Tensor):
        return ChunkTarget(parsed[start:stop])
    return ChunkTarget(parsed)
