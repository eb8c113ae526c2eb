"""Whether :func:`attribkit.explain` was given text, without importing torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: options every text method takes (read by ``explain_text``, not by the method's kernel)
TEXT_OPTIONS = ("tokenizer", "embedding", "max_new_tokens", "skip_special_tokens", "score")


def is_text_input(inputs: Any, options: Mapping[str, Any] | None = None) -> bool:
    """Text inputs: a string, a list of strings, a mapping with ``input_ids`` (a
    tokenizer's output), a 2-D integer tensor or array of token ids, or any input
    when a ``tokenizer=`` is given."""
    if options and options.get("tokenizer") is not None:
        return True
    if isinstance(inputs, str):
        return True
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        return True
    if isinstance(inputs, Mapping) or hasattr(inputs, "keys") and hasattr(inputs, "__getitem__"):
        try:
            return "input_ids" in inputs
        except TypeError:
            return False
    dtype = str(getattr(inputs, "dtype", ""))
    return getattr(inputs, "ndim", None) == 2 and ("int" in dtype and "uint8" not in dtype)
