"""A text dataset's items as padded batches of token ids, for ``explain_dataset`` on text.

An item is a string, ``(text,)``, ``(text, label)`` (an integer class, stored as
the item's label and explained with ``target="label"``), ``(text, continuation)``
(a string a causal LM's output is explained for: the item's own target), or an
:class:`~attribkit.datasets.folder.Unreadable` (one skipped row). :func:`text_batches`
builds a ``DataLoader`` over the batches a process computes, as
:func:`attribkit.datasets.items.batches` does for images: batch ``b`` is always
items ``b*B .. b*B+B-1``. Its workers tokenize (:class:`Tokenize`): each batch is
right-padded to its own longest text, and stored padded to the store's
``max_length``. A problem with an item's form is carried back as
:attr:`TextRows.problem` and raised in the main process as an
:class:`~attribkit.errors.InputError`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from attribkit.datasets.fingerprint import ITEM_DIGEST
from attribkit.datasets.folder import Unreadable
from attribkit.datasets.items import Indexed
from attribkit.errors import InputError
from attribkit.text.vocab import Vocab

TEXT_ITEM_FORMS = "a string, (text,), (text, label: an int) or (text, continuation: a string)"


@dataclasses.dataclass(frozen=True)
class TextItem:
    """One parsed item: its text, label and continuation (``None`` when absent)."""

    text: str
    label: int | None = None
    continuation: str | None = None


def parse_text_item(item: Any, index: int) -> TextItem | Unreadable:
    """An item of the data as a :class:`TextItem` (``InputError`` naming the index and the
    forms an item may take), or the :class:`Unreadable` it is."""
    if isinstance(item, Unreadable):
        return item
    parts = (item,) if isinstance(item, str) else tuple(item) if isinstance(item, (tuple, list)) else None
    if not parts or len(parts) > 2 or not isinstance(parts[0], str):
        what = type(item).__name__ if parts is None or not parts else \
            f"{len(parts)} parts" if len(parts) > 2 else f"a {type(parts[0]).__name__} where the text belongs"
        raise InputError(f"item {index} of the text data is {what}; an item is {TEXT_ITEM_FORMS}")
    if len(parts) == 1:
        return TextItem(parts[0])
    second = parts[1]
    if isinstance(second, torch.Tensor) and second.numel() == 1 and not second.is_floating_point():
        second = second.item()
    if isinstance(second, str):
        if not second.strip():
            raise InputError(f"item {index} of the text data has an empty continuation")
        return TextItem(parts[0], continuation=second)
    if isinstance(second, numbers.Integral) and not isinstance(second, bool):
        return TextItem(parts[0], label=int(second))
    raise InputError(f"item {index} of the text data has {second!r} beside its text; an item is {TEXT_ITEM_FORMS}")


class Tokenize:
    """Token ids of texts (with the tokenizer's special tokens) and of continuations (without),
    at most ``max_length`` tokens a text when ``truncate`` (the tokenizer's own truncation)."""

    def __init__(self, tokenizer: Any, max_length: int | None = None, truncate: bool = False) -> None:
        self.vocab = Vocab(tokenizer)
        if self.vocab.kind is None:
            raise InputError("explain_dataset on text needs tokenizer= (a Hugging Face tokenizer or a "
                             "tokenizers.Tokenizer)")
        self.max_length, self.truncate = max_length, truncate
        self._truncating: Any = None

    def prompts(self, texts: list[str]) -> list[list[int]]:
        """The texts' token ids."""
        if not texts:  # a tokenizer's call on no text fails
            return []
        if not self.truncate:
            return self.vocab.encode(texts)
        tokenizer = self.vocab.tokenizer
        if self.vocab.kind == "hf":
            return [list(r) for r in tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]]
        if self._truncating is None:  # a copy: the user's tokenizer is left as it is
            self._truncating = copy.deepcopy(tokenizer)
            self._truncating.enable_truncation(self.max_length)
        return [e.ids for e in self._truncating.encode_batch(list(texts))]

    def outputs(self, continuations: list[str]) -> list[list[int]]:
        """The continuations' token ids (no special tokens, as ``ak.Continuation``)."""
        return self.vocab.encode(continuations, special=False) if continuations else []


@dataclasses.dataclass
class TextRows:
    """Batch ``number`` of the text data: rows ``start .. start + size - 1``.

    Attributes:
        ids, mask: ``(k, L)`` token ids of the readable rows, right-padded to the longest,
            and ``True`` on their real tokens (``None`` when no row is readable).
        readable: ``(size,)`` bool; errors: why each row could not be read (``""``: it was).
        texts: the readable rows' texts. labels: ``(size,)`` int64 (-1: none), or ``None``.
        outputs: the readable rows' continuation ids, when the items carry continuations.
        problem: a structural problem with the data (raised by the caller).
        digests: each row's input digest (:func:`text_digests`), when asked for.
    """

    number: int
    start: int
    size: int
    ids: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    readable: np.ndarray | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    texts: list[str] = dataclasses.field(default_factory=list)
    labels: np.ndarray | None = None
    outputs: list[list[int]] | None = None
    problem: str | None = None
    digests: list[str] | None = None


class TextCollate:
    """Make :class:`TextRows` of ``[(index, item), ...]`` (picklable, for workers)."""

    def __init__(self, batch_size: int, tokenize: Tokenize, digests: bool = False) -> None:
        self.batch_size, self.tokenize, self.digests = batch_size, tokenize, digests

    def __call__(self, pairs: Sequence[tuple[int, Any]]) -> TextRows:
        start = pairs[0][0]
        rows = TextRows(number=start // self.batch_size, start=start, size=len(pairs))
        try:
            parsed = [parse_text_item(item, i) for i, item in pairs]
            items = [p for p in parsed if isinstance(p, TextItem)]
            rows.errors = [p.reason if isinstance(p, Unreadable) else "" for p in parsed]
            rows.readable = np.array([isinstance(p, TextItem) for p in parsed])
            rows.texts = [p.text for p in items]
            if any(p.label is not None for p in items):
                rows.labels = np.array([p.label if isinstance(p, TextItem) and p.label is not None else -1
                                        for p in parsed], dtype=np.int64)
            if any(p.continuation is not None for p in items):
                if not all(p.continuation is not None for p in items):
                    raise InputError(f"some items of batch {rows.number} have a continuation and others not")
                rows.outputs = self.tokenize.outputs([p.continuation for p in items])
            if items:
                rows.ids, rows.mask = padded(self.tokenize.prompts(rows.texts), self.tokenize.vocab.pad_id,
                                             [i for (i, _), p in zip(pairs, parsed) if isinstance(p, TextItem)])
        except InputError as exc:
            rows.problem = str(exc)
        if self.digests and rows.problem is None:
            rows.digests = text_digests(rows)
        return rows


def padded(rows: list[list[int]], pad: int | None, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of token-id rows right-padded to the longest (``indices``: the items, for errors)."""
    empty = [i for i, r in zip(indices, rows) if not r]
    if empty:
        raise InputError(f"item {empty[0]} of the text data has no tokens")
    width = max(len(r) for r in rows)
    pad = 0 if pad is None else pad
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    return ids, mask


def text_digests(rows: TextRows) -> list[str]:
    """One hex digest per row: a readable row's token ids, label and continuation ids; an
    unreadable row's reason (the images' digests, :mod:`attribkit.datasets.fingerprint`)."""
    digests = []
    k = 0
    for row in range(rows.size):
        if rows.readable is not None and rows.readable[row]:
            ids = rows.ids[k][rows.mask[k]].numpy().astype("<i8")
            digest = hashlib.sha1(b"tokens\0" + ids.tobytes(), usedforsecurity=False)
            if rows.labels is not None:
                digest.update(f"\0label {int(rows.labels[row])}".encode())
            if rows.outputs is not None:
                digest.update(b"\0continuation" + np.asarray(rows.outputs[k], dtype="<i8").tobytes())
            k += 1
        else:
            reason = rows.errors[row] if row < len(rows.errors) else ""
            digest = hashlib.sha1(f"unreadable\0{reason}".encode(), usedforsecurity=False)
        digests.append(digest.hexdigest()[:2 * ITEM_DIGEST])
    return digests


def text_batches(dataset: Any, numbers_: Sequence[int], batch_size: int, num_workers: int, tokenize: Tokenize,
                 digests: bool = False) -> torch.utils.data.DataLoader:
    """A loader of the :class:`TextRows` of batches ``numbers_`` (in that order)."""
    n = len(dataset)
    plan = [list(range(b * batch_size, min(n, (b + 1) * batch_size))) for b in numbers_]
    return torch.utils.data.DataLoader(
        _Items(dataset), batch_sampler=plan, num_workers=num_workers,
        collate_fn=TextCollate(batch_size, tokenize, digests), prefetch_factor=2 if num_workers else None)


class _Items(Indexed):
    """``(i, dataset[i])`` one item at a time (a text dataset has no tensors to slice)."""

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[int, Any]]:
        return [(i, self.dataset[i]) for i in indices]


def measure(dataset: Any, tokenize: Tokenize, chunk: int = 512) -> tuple[int, int, int | None]:
    """``(longest text, longest continuation, first readable item)`` in tokens, over every
    item (a pass that reads and tokenizes the data once; texts truncated as ``tokenize`` does)."""
    longest = longest_output = 0
    first = None
    texts: list[str] = []
    outputs: list[str] = []

    def flush() -> None:
        nonlocal longest, longest_output
        longest = max([longest, *map(len, tokenize.prompts(texts))])
        longest_output = max([longest_output, *map(len, tokenize.outputs(outputs))])
        texts.clear()
        outputs.clear()

    for index in range(len(dataset)):
        item = parse_text_item(dataset[index], index)
        if isinstance(item, Unreadable):
            continue
        first = index if first is None else first
        texts.append(item.text)
        if item.continuation is not None:
            outputs.append(item.continuation)
        if len(texts) >= chunk:
            flush()
    flush()
    return longest, longest_output, first
