"""Checks shared by the two engines."""

from __future__ import annotations

from typing import Any

from attribkit.errors import InputError


def check_scores(scores: Any) -> Any:
    """``scores`` when the model gave one ``(B, K)`` tensor, else an :class:`InputError`."""
    if not hasattr(scores, "shape"):
        raise InputError(f"the Keras model returns {type(scores).__name__}; attribkit explains a model with "
                         "one (B, K) scores output")
    if len(scores.shape) != 2:
        raise InputError(f"the Keras model's output must be (B, K) scores, got shape {tuple(scores.shape)}")
    return scores
