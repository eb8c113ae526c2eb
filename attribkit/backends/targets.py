"""The classes a framework kernel explains: given, or each row's top class from its first forward."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from attribkit.errors import InputError, TargetError


def parse_classes(target: Any, batch: int) -> np.ndarray | None:
    """``None`` (each row's top class) or ``(B,)`` int64 classes from an int or one per row."""
    if target is None:
        return None
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        classes = np.full(batch, int(target), dtype=np.int64)
    elif callable(target) or hasattr(target, "bind"):
        raise TargetError("on a model of another framework the target is None, a class or one class per "
                          f"image; got {type(target).__name__} (target objects and callables read "
                          "PyTorch outputs)")
    else:
        classes = np.asarray(target.detach().cpu() if hasattr(target, "detach") else target)
        if classes.ndim != 1 or len(classes) != batch or not np.issubdtype(classes.dtype, np.integer):
            raise TargetError(f"target must be an int or {batch} ints (one per image), got {target!r}")
        classes = classes.astype(np.int64)
    if (classes < 0).any():
        raise TargetError(f"target classes must be >= 0, got {classes.tolist()}")
    return classes


class Classes:
    """One chunk's classes: ``classes`` is ``None`` until the first forward when none were given
    (then the kernel passes ``None`` to the framework, which explains the top class in the same
    pass, and :meth:`observe` records the argmax)."""

    def __init__(self, classes: np.ndarray | None) -> None:
        self.classes = classes

    def observe(self, scores: Any) -> None:
        """Record the top classes of ``scores`` when none were given, else check the range."""
        scores = np.asarray(scores)
        if scores.ndim != 2:
            raise InputError(f"the model's scores must be (B, K) for a class target, got shape {scores.shape}")
        if self.classes is None:
            self.classes = scores.argmax(-1).astype(np.int64)
        elif (self.classes >= scores.shape[1]).any():
            raise TargetError(f"target class {int(self.classes.max())} is out of range: the model has "
                              f"{scores.shape[1]} classes")

    def resolve(self, fm: Any, x: np.ndarray) -> np.ndarray:
        """The classes, from one forward of ``x`` when none were given (kernels that need them
        before their first pass: integrated gradients, SmoothGrad)."""
        if self.classes is None:
            self.observe(fm.scores(x))
        return self.classes
