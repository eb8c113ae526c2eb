"""Text inputs as the methods see them: a right-padded batch of token ids.

:func:`text_batch` takes strings (with a tokenizer), a tokenizer's output (a mapping
with ``input_ids`` and ``attention_mask``) or a 2-D tensor of ids. Rows given
left-padded are moved to the left (right padding), so that position ``t`` of every
row is the ``t``-th real token: a causal model's real tokens then never see padding,
and a continuation can follow each prompt directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from attribkit.errors import InputError
from attribkit.text.vocab import Vocab


@dataclasses.dataclass
class TextBatch:
    """Token ids of ``B`` texts.

    Attributes:
        ids: ``(B, T)`` long, right-padded with ``pad_id``.
        mask: ``(B, T)`` bool, ``True`` on real tokens.
        special: ``(B, T)`` bool, ``True`` on the tokenizer's special tokens.
        tokens: per text, the strings of its real tokens.
        pad_id: the id that fills padding (and the default baseline token).
        vocab: the tokenizer's :class:`~attribkit.text.vocab.Vocab`.
        texts: the strings, when text was given.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    special: torch.Tensor
    tokens: list[list[str]]
    pad_id: int
    vocab: Vocab
    texts: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> torch.Tensor:
        """Real tokens per text, ``(B,)``."""
        return self.mask.sum(1)


def text_batch(inputs: Any, tokenizer: Any = None, *, device: torch.device | None = None) -> TextBatch:
    """A :class:`TextBatch` from strings, a tokenizer's output or a tensor of ids."""
    vocab = Vocab(tokenizer)
    texts = None
    if isinstance(inputs, str):
        inputs = [inputs]
    if isinstance(inputs, (list, tuple)) and inputs and all(isinstance(t, str) for t in inputs):
        texts = list(inputs)
        rows = vocab.encode(texts)
        empty = [i for i, r in enumerate(rows) if not r]
        if empty:
            raise InputError(f"text {empty[0]} ({texts[empty[0]]!r}) has no tokens")
        width = max(len(r) for r in rows)
        pad = vocab.pad_id if vocab.pad_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    else:
        ids, mask = _ids_and_mask(inputs)
        pad = vocab.pad_id if vocab.pad_id is not None else 0
        ids, mask = right_padded(ids, mask, pad)
    if device is not None:
        ids, mask = ids.to(device), mask.to(device)
    special_ids = torch.tensor(sorted(vocab.special_ids), dtype=torch.long, device=ids.device)
    special = torch.isin(ids, special_ids) & mask
    tokens = [vocab.tokens(row[m].tolist()) for row, m in zip(ids.cpu(), mask.cpu())]
    return TextBatch(ids=ids, mask=mask, special=special, tokens=tokens, pad_id=int(pad),
                     vocab=vocab, texts=texts)


def _ids_and_mask(inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(inputs, Mapping) or (hasattr(inputs, "keys") and "input_ids" in inputs):
        ids = torch.as_tensor(inputs["input_ids"])
        mask = inputs.get("attention_mask") if hasattr(inputs, "get") else None
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool()
    else:
        ids = torch.as_tensor(inputs)
        mask = torch.ones_like(ids, dtype=torch.bool)
    if ids.ndim == 1:
        ids, mask = ids[None], mask[None]
    if ids.ndim != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise InputError(f"token ids must be a (B, T) integer tensor, got {tuple(ids.shape)} {ids.dtype}")
    if mask.shape != ids.shape:
        raise InputError(f"attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}")
    if not bool(mask.any(1).all()):
        raise InputError(f"text {int((~mask.any(1)).nonzero()[0])} has no real token (its attention_mask is all 0)")
    return ids.long(), mask


def right_padded(ids: torch.Tensor, mask: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with their real tokens moved to the front (order kept), padding after them."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    ids, mask = ids.gather(1, order), mask.gather(1, order)
    return ids.masked_fill(~mask, pad), mask
