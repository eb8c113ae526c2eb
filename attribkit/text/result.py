"""The result of a text method: token values, the tokens, and per output token."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from attribkit.result import Attribution


@dataclasses.dataclass
class TokenAttribution(Attribution):
    """Token attributions for a batch of texts (an :class:`~attribkit.result.Attribution`).

    Attributes (beyond ``values``, ``method``, ``target``, ``meta``):
        values: ``(B, T)`` one value per prompt token (right-padded: position ``t`` is
            the ``t``-th token of the text; padding is 0). For a continuation, the sum
            of ``matrix`` over its output tokens.
        tokens: per text, the strings of its ``T_i`` prompt tokens.
        mask: ``(B, T)`` bool, ``True`` on the tokens that carry a value (real tokens,
            without the special ones when ``skip_special_tokens=True``).
        special: ``(B, T)`` bool, the tokenizer's special tokens.
        matrix: ``(B, T_out, T)`` per output token of a continuation (causal LMs), else ``None``.
        output_tokens: per text, the strings of the continuation's tokens, else ``None``.
        texts: the input strings, when text was given.
        target: ``(B,)`` the explained class (classifiers) or, for a continuation, ``None``
            (its token ids are ``meta["continuation"]``).
    """

    tokens: list[list[str]] = dataclasses.field(default_factory=list)
    mask: Any = None
    special: Any = None
    matrix: Any = None
    output_tokens: list[list[str]] | None = None
    texts: list[str] | None = None

    def pairs(self, i: int = 0) -> list[tuple[str, float]]:
        """``(token, value)`` of text ``i``'s prompt tokens, in order."""
        values = self.numpy()[i]
        return [(tok, float(values[t])) for t, tok in enumerate(self.tokens[i])]

    def upsampled(self, size: tuple[int, int] | None = None) -> Any:
        """Token values have no image size: :class:`ValueError`."""
        raise ValueError("token attributions are not images: read values, tokens and pairs(i)")

    def _repr_html_(self) -> str:
        """Jupyter: each text's tokens highlighted by value (diverging colours, one scale)."""
        from attribkit.text.views import html_tokens

        return html_tokens(self)


def token_numpy(values: Any) -> np.ndarray:
    """``values`` (tensor or array) as a float64 NumPy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
