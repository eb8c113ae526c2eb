"""What every target object shares: reading a model's raw output, rows, expansion.

A target decides which scalar per input row a method explains. Plain targets
(``None``, an int, one int per image, a callable ``raw_output -> (B,)``) are
parsed by :mod:`attribkit.torch.targets`; a :class:`Target` object also knows how
to read the model's raw output (a tensor, a dict, a list of per-image dicts, a
tuple, a Hugging Face ``ModelOutput``) and gives one scalar per row, on the
unperturbed batch and on perturbed copies alike.

The protocol (for writers of new targets):

* :meth:`Target.bind` checks the target against the batch size, before any work,
  and returns the target with one entry per image;
* :meth:`Target.take` the rows ``rows`` of a bound target (chunks, repeats);
* :meth:`Target.score` ``(n,)`` scalars from the raw output of ``n`` rows, row ``k``
  being a copy of image ``images[k]`` (``None``: row ``k`` is image ``k``);
* :meth:`Target.expand` (optional): targets that explain several things per image
  (``Labels([3, 7])``, several boxes) return ``(image_index, per_row_target)``;
  :func:`attribkit.explain` then explains the image ``image_index[r]`` for row ``r``
  and records ``image_index`` in ``result.meta``;
* :meth:`Target.labels` the class explained per row, where one exists (the result's
  ``target``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from attribkit.errors import TargetError


def describe(output: Any, depth: int = 0) -> str:
    """A short description of a raw model output, for error messages:
    ``Tensor(2, 5)``, ``dict{out: Tensor(2, 5, 8, 8)}``, ``list[2 × dict{boxes, labels, scores}]``."""
    if isinstance(output, torch.Tensor):
        return f"Tensor{tuple(output.shape)}"
    if depth > 1:
        return type(output).__name__
    if isinstance(output, Mapping):
        inner = ", ".join(f"{k}: {describe(v, depth + 1)}" if depth == 0 else str(k)
                          for k, v in list(output.items())[:6])
        return f"{type(output).__name__}{{{inner}}}"
    if isinstance(output, (list, tuple)):
        if not output:
            return f"empty {type(output).__name__}"
        return f"{type(output).__name__}[{len(output)} × {describe(output[0], depth + 1)}]"
    return type(output).__name__


def find_tensor(output: Any, keys: Sequence[str], *, what: str, fits: str) -> torch.Tensor:
    """The tensor a target reads from a raw ``output``: the output itself, the first of
    ``keys`` found in a mapping or as an attribute (Hugging Face ``ModelOutput``), or the
    first element of a tuple; ``TargetError`` naming what the model returned and ``fits``
    (the targets that read such an output) otherwise."""
    if isinstance(output, torch.Tensor):
        return output
    for key in keys:
        if isinstance(output, Mapping) and isinstance(output.get(key), torch.Tensor):
            return output[key]
        if not isinstance(output, Mapping) and isinstance(getattr(output, key, None), torch.Tensor):
            return getattr(output, key)
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TargetError(f"this target reads {what}; the model returned {describe(output)}. {fits}")


def as_index_tensor(value: Any, name: str) -> torch.Tensor:
    """An integer class / label argument as a 1-D ``long`` tensor (a scalar gives one entry)."""
    if isinstance(value, bool):
        raise TargetError(f"{name} must be an integer or a sequence of integers, got a bool")
    if isinstance(value, numbers.Integral):
        return torch.tensor([int(value)])
    t = torch.as_tensor(value)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex() or t.ndim > 1:
        raise TargetError(f"{name} must be an integer or a 1-D sequence of integers, got a "
                          f"{tuple(t.shape)} {t.dtype} tensor")
    return t.long().reshape(-1)


def check_range(indices: torch.Tensor, n: int, what: str) -> None:
    """``TargetError`` for an index outside ``0..n-1``."""
    bad = (indices < 0) | (indices >= n)
    if bool(bad.any()):
        raise TargetError(f"{what} {int(indices[bad][0])} is out of range for a model with {n} "
                          f"outputs (valid: 0..{n - 1})")


def row_index(images: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """The image each of ``n`` rows belongs to (``arange(n)`` for ``None``)."""
    if images is None:
        return torch.arange(n, device=device)
    return images.to(device)


class Target:
    """Base class of target objects (see the module docstring for the protocol)."""

    #: whether :meth:`bind` has fixed the per-image entries
    bound: bool = False

    def bind(self, batch: int) -> Target:
        """This target with one entry per image of a batch of ``batch`` (``TargetError``
        for a per-image argument of another length)."""
        raise NotImplementedError

    def take(self, rows: torch.Tensor) -> Target:
        """The bound target of rows ``rows`` (a 1-D index tensor) of the batch."""
        raise NotImplementedError

    def score(self, output: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        """``(n,)``: one scalar per row of the raw ``output`` of ``n`` rows; row ``k`` is a
        (possibly perturbed) copy of image ``images[k]`` (``None``: of image ``k``)."""
        raise NotImplementedError

    def expand(self, batch: int) -> tuple[torch.Tensor, Target] | None:
        """``(image_index, per_row_target)`` when this target explains several things per
        image; ``None`` (the default) when it explains one per image."""
        del batch
        return None

    def labels(self) -> torch.Tensor | None:
        """The class explained per image of a bound target, where there is one."""
        return None

    def check_rows(self, scores: torch.Tensor, n: int) -> torch.Tensor:
        """``scores`` unless it is not one scalar per row (a target's own bug)."""
        if tuple(scores.shape) != (n,):
            raise TargetError(f"{type(self).__name__} gave scores of shape {tuple(scores.shape)} "
                              f"for {n} rows")
        return scores
