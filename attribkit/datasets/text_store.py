"""The store of a text run of ``explain_dataset``: an :class:`AttributionStore` with tokens.

Beyond the images' layout (:mod:`attribkit.datasets.store`: ``ids``, ``errors``,
``labels``, ``targets``, ``predictions``/``scores`` of a classifier, ``maps/METHOD``,
``integrity``, ``done``), with ``T`` the store's ``max_length`` and ``W`` its
``max_output`` (a continuation's tokens at most)::

    texts                 (N,) str, each item's text
    tokens/ids            (N, T) int64 token ids, -1 after the text's last token
    tokens/strings        (N, T) str, the tokens ("" after the last)
    tokens/mask           (N, T) bool, the tokens that carry a value (``skip_special_tokens``
                          leaves the special ones out)
    tokens/special        (N, T) bool, the tokenizer's special tokens
    maps/METHOD           (N, T) one value per token (0 after the text's last token), as ``explain``
    outputs/ids           (N, W) int64 a causal LM's explained continuation (-1 after its end)
    outputs/strings       (N, W) str its tokens
    matrices/METHOD       (N, W, T) per output token (``TokenAttribution.matrix``)

The metadata's ``text`` holds ``kind`` (``class``, ``continuation``, ``callable``),
``max_length``, ``max_output`` and the tokenizer's name; the settings add the
tokenizer's class, name and vocabulary fingerprint, the text options and
``max_length``, compared on resume as the images' settings are. Reading needs zarr,
not torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attribkit.datasets.store import AttributionStore


class TextStore(AttributionStore):
    """A text run's store: ``store[method]`` is the ``(N, T)`` zarr array of token values;
    :meth:`attribution` gives rows back as a :class:`~attribkit.text.result.TokenAttribution`."""

    @property
    def kind(self) -> str:
        """``"class"`` (a classifier), ``"continuation"`` (a causal LM) or ``"callable"``."""
        return str(self.meta["text"]["kind"])

    @property
    def texts(self) -> np.ndarray:
        """Each item's text (``""`` for an unreadable or unstored one)."""
        return self._array("texts")[:]

    @property
    def token_ids(self) -> np.ndarray:
        """``(N, T)`` token ids, -1 after each text's last token."""
        return self._array("tokens/ids")[:]

    def tokens(self, i: int) -> list[str]:
        """Item ``i``'s tokens."""
        ids = self._array("tokens/ids")[i]
        return [str(t) for t in self._array("tokens/strings")[i][:int((ids >= 0).sum())]]

    def output_tokens(self, i: int) -> list[str] | None:
        """Item ``i``'s explained continuation (a causal LM), else ``None``."""
        if self.kind != "continuation":
            return None
        ids = self._array("outputs/ids")[i]
        return [str(t) for t in self._array("outputs/strings")[i][:int((ids >= 0).sum())]]

    def matrix(self, method: str) -> Any:
        """The ``(N, W, T)`` zarr array of ``method``'s values per output token (a continuation)."""
        if self.kind != "continuation":
            raise KeyError(f"{self.path} explains {self.kind}es, which have no per-output-token matrix")
        self[method]  # the method's name checked, aliases resolved
        from attribkit.api import get_method

        name = method if method in self.methods else get_method(method).name
        return self._array(f"matrices/{name}")

    def attribution(self, method: str, rows: Any = None) -> Any:
        """Rows ``rows`` (a slice, indices; ``None``: every row) of ``method`` as the
        :class:`~attribkit.text.result.TokenAttribution` ``explain`` gave: values ``(k, T_k)``
        cropped to the rows' longest text (NumPy float32), tokens, mask, special, and for a
        continuation the matrix and output tokens. Rows not stored hold NaN and no tokens."""
        from attribkit.text.result import TokenAttribution

        index = np.arange(len(self))[slice(None) if rows is None else rows]
        index = np.atleast_1d(index)
        ids = self._array("tokens/ids").get_orthogonal_selection((index, slice(None)))
        lengths = (ids >= 0).sum(1)
        width = max(int(lengths.max(initial=0)), 1)
        strings = self._array("tokens/strings").get_orthogonal_selection((index, slice(None)))
        values = self[method].get_orthogonal_selection((index, slice(None)))[:, :width]
        targets = self.targets
        meta: dict[str, Any] = {"store": str(self.path), "rows": index.tolist(), "kind": self.kind}
        matrix = output_tokens = None
        if self.kind == "continuation":
            outputs = self._array("outputs/ids").get_orthogonal_selection((index, slice(None)))
            out_width = max(int((outputs >= 0).sum(1).max(initial=0)), 1)
            matrix = self.matrix(method).get_orthogonal_selection((index, slice(None), slice(None)))
            matrix = matrix[:, :out_width, :width]
            output_tokens = [self.output_tokens(int(i)) for i in index]
            meta["continuation"] = [row[row >= 0].tolist() for row in outputs]
        texts = self.texts[index]
        return TokenAttribution(
            values=values, method=self[method].path.rsplit("/", 1)[-1],
            target=None if targets is None else targets[index], meta=meta,
            tokens=[[str(t) for t in s[:n]] for s, n in zip(strings, lengths)],
            mask=self._array("tokens/mask").get_orthogonal_selection((index, slice(None)))[:, :width],
            special=self._array("tokens/special").get_orthogonal_selection((index, slice(None)))[:, :width],
            matrix=matrix, output_tokens=output_tokens, texts=[str(t) for t in texts])

    def pairs(self, method: str, i: int) -> list[tuple[str, float]]:
        """``(token, value)`` of item ``i``'s tokens."""
        values = self[method][i]
        return [(token, float(values[t])) for t, token in enumerate(self.tokens(i))]

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{int(self.done.sum())} of {len(self)} texts stored"
        return f"TextStore('{self.path}', {len(self)} texts, methods {self.methods}, {state})"
