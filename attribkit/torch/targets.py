"""Target selection: which scalar per image a method explains.

``target`` may be ``None`` (each image's top class), an ``int`` (the same class
for all images), a sequence or 1-D integer tensor (one class per image), a
callable ``raw_output -> (B,)`` for any other output (multi-output models, a logit
difference), or a target object of :mod:`attribkit.targets` (``Region``, ``Box``,
``Similarity``, ``Labels``, ``Class``), which reads the model's raw output itself.
Class targets read ``(B, classes)`` scores also from a dict or Hugging Face output
(``logits``) or a tuple (its first element). The callable must act row by row,
since batches are split into chunks.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from attribkit.errors import TargetError
from attribkit.targets.base import Target
from attribkit.targets.classes import class_scores

TargetLike = None | int | Sequence[int] | torch.Tensor | Callable[[Any], torch.Tensor] | Target


def parse_target(target: TargetLike, batch: int) -> torch.Tensor | Callable | Target | None:
    """Validate the target form against the batch size (ranges are checked on the scores);
    a target object comes back bound to the batch (:meth:`attribkit.targets.Target.bind`)."""
    if isinstance(target, Target):
        return target.bind(batch)
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
        "target must be None, an int, a sequence or 1-D tensor of ints, a callable "
        "raw_output -> (B,) or a target object (attribkit.targets: Class, Labels, Region, Box, "
        f"Similarity); got {type(target).__name__}"
    )


class ChunkTarget:
    """The target of one chunk of the batch.

    The class indices are resolved once per chunk, from the scores of the
    unperturbed chunk: the kernel decorators do it when the model first runs on
    the chunk's own inputs (or, if a kernel never did, with one extra forward),
    and :meth:`select` does it on first use. Kernels then call :meth:`select` on
    the chunk's scores and :meth:`select_rows` on the scores of perturbed copies;
    :attr:`indices` is what the result reports. Forward-only kernels also get
    :attr:`clean_scores`, the ``(B,)`` target scores of the unperturbed chunk.
    :attr:`top` is the model's own prediction on the unperturbed chunk, ``(class,
    score)`` per image, known once the classes are resolved.
    """

    def __init__(self, parsed: torch.Tensor | Callable | None) -> None:
        self.parsed = parsed
        self.indices: torch.Tensor | None = None
        self.clean_scores: torch.Tensor | None = None
        self.top: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def is_callable(self) -> bool:
        return (callable(self.parsed) and not isinstance(self.parsed, torch.Tensor)
                and not isinstance(self.parsed, Target))

    @property
    def is_object(self) -> bool:
        """Whether the target is a target object (:mod:`attribkit.targets`)."""
        return isinstance(self.parsed, Target)

    @property
    def resolved(self) -> bool:
        """Whether :meth:`select_rows` can run (a callable or target object needs no resolution)."""
        return self.is_callable or self.is_object or self.indices is not None

    @property
    def classes(self) -> torch.Tensor:
        """The resolved class index per image, for methods that need classes
        (``TargetError`` for a callable target)."""
        if self.is_object and self.parsed.labels() is not None:
            return self.parsed.labels()
        if self.is_callable or self.is_object:
            raise TargetError("this method needs a class index per image, and a "
                              f"{'callable target' if self.is_callable else repr(self.parsed)} has "
                              "no class indices; pass an int or one int per image")
        if self.indices is None:
            raise TargetError("internal error: the classes were used before they were resolved on "
                              "the unperturbed batch")
        return self.indices

    def select(self, scores: Any) -> torch.Tensor:
        """One scalar per image from the model's raw output: ``scores[i, target[i]]``,
        ``target(scores)`` or the target object's score."""
        if self.is_callable:
            return self._call(scores)
        if self.is_object:
            return self.parsed.score(scores)
        indices = self.indices_for(scores) if self.indices is None else self.indices
        scores = class_scores(scores)
        if scores.ndim != 2 or len(scores) != len(indices):
            raise TargetError(f"scores of shape {tuple(scores.shape)} do not hold one row per image "
                              f"of the {len(indices)} being explained")
        return scores.gather(1, indices.to(scores.device)[:, None]).squeeze(1)

    def select_rows(self, scores: Any, images: torch.Tensor) -> torch.Tensor:
        """Like :meth:`select` for rows that are perturbed copies of images: row ``k``
        of ``scores`` belongs to image ``images[k]`` of the chunk."""
        if self.is_callable:
            return self._call(scores)
        if self.is_object:
            return self.parsed.score(scores, images)
        scores = class_scores(scores)
        if self.indices is None:
            raise TargetError("internal error: select_rows() before the classes were resolved "
                              "on the unperturbed batch")
        indices = self.indices.to(scores.device)[images.to(scores.device)]
        return scores.gather(1, indices[:, None]).squeeze(1)

    def _call(self, scores: Any) -> torch.Tensor:
        out = self.parsed(scores)
        rows = _rows(scores)
        if not isinstance(out, torch.Tensor) or (rows is not None and tuple(out.shape) != (rows,)) \
                or out.ndim != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TargetError(
                f"the target callable must return a ({rows if rows is not None else 'B'},) tensor, "
                f"one scalar per image; it returned {shape}"
            )
        return out

    def indices_for(self, scores: torch.Tensor) -> torch.Tensor:
        """Resolve the class index per image (argmax for ``None``) from the unperturbed
        ``scores``, range-checked, and keep it in :attr:`indices`."""
        if self.is_callable or self.is_object:
            raise TargetError("a callable target or target object has no class indices")
        scores = class_scores(scores)
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
        top = scores.detach().float().max(dim=1)
        self.top = (top.indices, top.values)
        self.indices = indices
        return indices

    def observe(self, inputs: Any, scores: Any, chunk: torch.Tensor) -> None:
        """Resolve from a forward the kernel ran, if it ran on the chunk itself
        (the same storage and shape: ``chunk.detach()`` counts) and nothing is resolved yet."""
        if self.resolved or not isinstance(inputs, torch.Tensor):
            return
        if inputs.shape == chunk.shape and inputs.data_ptr() == chunk.data_ptr():
            self.indices_for(scores)


def chunk(parsed: torch.Tensor | Callable | Target | None, start: int, stop: int) -> ChunkTarget:
    """The :class:`ChunkTarget` for rows ``start:stop`` of the batch."""
    if isinstance(parsed, torch.Tensor):
        return ChunkTarget(parsed[start:stop])
    if isinstance(parsed, Target):
        return ChunkTarget(parsed.take(torch.arange(start, stop)))
    return ChunkTarget(parsed)


def _rows(output: Any) -> int | None:
    """How many rows a raw output holds, where that is clear."""
    if isinstance(output, torch.Tensor):
        return output.shape[0] if output.ndim else None
    if isinstance(output, (list, tuple)) and output and not isinstance(output[0], torch.Tensor):
        return len(output)
    try:
        return class_scores(output).shape[0]
    except TargetError:
        return None
