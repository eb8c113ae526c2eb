"""Checks shared by the two engines."""

from __future__ import annotations

from typing import Any

from attribkit.errors import InputError, TargetError


def check_scores(scores: Any) -> Any:
    """``scores`` when the model gave one ``(B, K)`` tensor, else an :class:`InputError`."""
    if not hasattr(scores, "shape"):
        raise InputError(f"the Keras model returns {type(scores).__name__}; attribkit explains a model with "
                         "one (B, K) scores output")
    if len(scores.shape) != 2:
        raise InputError(f"the Keras model's output must be (B, K) scores, got shape {tuple(scores.shape)}")
    return scores


def check_classes(classes: Any, scores: Any) -> None:
    """A :class:`TargetError` when a given class is out of the scores' range (before the backward;
    on JAX the shapes are static, so this runs once, while tracing)."""
    if classes is not None and len(classes) and int(classes.max()) >= scores.shape[1]:
        raise TargetError(f"target class {int(classes.max())} is out of range: the model has "
                          f"{scores.shape[1]} classes")
