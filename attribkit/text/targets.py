"""What a text method explains, and the rows it runs on.

- A **classifier** (the model returns ``(B, C)`` scores, also inside a Hugging Face
  output): a class per text, its logit explained. ``None``: the top class; an int;
  one int per text; a callable ``raw_output -> (B,)``.
- A **causal LM** (the model returns ``(B, T, V)`` logits): a continuation of each
  prompt, whose tokens are scored by teacher forcing on ``prompt + continuation`` (one
  forward, as Captum's ``LLMAttribution`` with ``forward_in_tokens=False``): output
  token ``j`` of text ``i`` is read at position ``len(prompt_i) + j - 1``, as
  ``log p(y_j | prompt, y_<j)`` (``score="log_prob"``, the default and Captum's
  ``attr_target``), its probability (``"prob"``) or its logit (``"logit"``, as LXT).
  ``None``: the model's own greedy continuation of ``max_new_tokens`` tokens (stopping at
  the end-of-sequence token); an int: that next token for every text; a string, a list
  of strings (one per text), token ids, or a :class:`Continuation`.

Every row is ``prompt + continuation``, right-padded; only the prompt's positions are
attributed (``TextPlan.prompt``).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from attribkit.errors import InputError, TargetError
from attribkit.text.inputs import TextBatch

SCORES = ("log_prob", "prob", "logit")


class Continuation:
    """A continuation of each prompt whose (log-)probability is explained.

    Args:
        continuation: a string (the same for every text), one string per text, token
            ids (one list for all, or one list per text), or a ``(B, n)`` tensor.
        score: ``"log_prob"`` (default), ``"prob"`` or ``"logit"`` of each output token.

    Strings are tokenized without special tokens (as Captum does): for GPT-2-style
    tokenizers, start the continuation with its space (``" Paris"``).
    """

    def __init__(self, continuation: Any, *, score: str | None = None) -> None:
        if score is not None and score not in SCORES:
            raise InputError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        self.continuation = continuation
        self.score = score

    def __repr__(self) -> str:
        return f"Continuation({self.continuation!r})"

    def ids(self, batch: TextBatch) -> list[list[int]]:
        """Token ids of the continuation of each text of ``batch``."""
        c = self.continuation
        n = len(batch)
        if isinstance(c, str):
            c = [c] * n
        if isinstance(c, torch.Tensor):
            c = c.tolist() if c.ndim == 2 else [c.tolist()] * n
        if isinstance(c, Sequence) and c and all(isinstance(x, numbers.Integral) for x in c):
            c = [list(c)] * n
        if not isinstance(c, Sequence) or len(c) != n:
            raise TargetError(f"a continuation per text is needed: {n} texts, got "
                              f"{len(c) if isinstance(c, Sequence) else type(c).__name__}")
        rows = [batch.vocab.encode([x], special=False)[0] if isinstance(x, str) else [int(t) for t in x]
                for x in c]
        empty = [i for i, r in enumerate(rows) if not r]
        if empty:
            raise TargetError(f"the continuation of text {empty[0]} has no tokens")
        return rows


@dataclasses.dataclass
class TextPlan:
    """The rows a text method runs on and how their scores are read.

    Attributes:
        kind: ``"class"``, ``"callable"`` (one score per text) or ``"continuation"``.
        ids, mask: ``(B, L)`` rows (``prompt + continuation``, right-padded), ``True`` on real tokens.
        prompt: ``(B, L)`` bool, the positions that are attributed (real prompt tokens).
        prompt_len: ``(B,)`` real prompt tokens per row.
        classes: ``(B,)`` explained classes (``kind == "class"``).
        outputs: ``(B, n)`` continuation ids (padding 0) and ``out_mask`` ``(B, n)``.
        score: how an output token is scored (``log_prob``, ``prob``, ``logit``).
        pad_id: the tokenizer's padding id (the default baseline token).
    """

    kind: str
    ids: torch.Tensor
    mask: torch.Tensor
    prompt: torch.Tensor
    prompt_len: torch.Tensor
    pad_id: int
    classes: torch.Tensor | None = None
    outputs: torch.Tensor | None = None
    out_mask: torch.Tensor | None = None
    score: str = "log_prob"
    fn: Callable | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def width(self) -> int:
        """Scores per row: the continuation's length, else 1."""
        return 1 if self.outputs is None else self.outputs.shape[1]

    @property
    def query(self) -> torch.Tensor:
        """``(B, width)`` the position whose output each score reads (the last prompt token
        and, for a continuation, the positions before each output token)."""
        start = (self.prompt_len - 1)[:, None]
        return start + torch.arange(self.width, device=start.device)[None]

    def take(self, start: int, stop: int) -> TextPlan:
        """Rows ``start:stop``."""
        return self._select(slice(start, stop))

    def rows(self, index: torch.Tensor) -> TextPlan:
        """Rows ``index`` (a 1-D integer tensor; rows may repeat)."""
        return self._select(index)

    def _select(self, key: Any) -> TextPlan:
        cut = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("ids", "mask", "prompt", "prompt_len", "classes", "outputs", "out_mask"):
            if cut[name] is not None:
                cut[name] = cut[name][key.to(cut[name].device) if isinstance(key, torch.Tensor) else key]
        return TextPlan(**cut)

    def scores(self, output: Any) -> torch.Tensor:
        """``(B, width)`` scores of the rows read from the model's raw ``output`` (a row of
        a continuation shorter than ``width`` has zeros after its end)."""
        if self.kind == "callable":
            return _column(self.fn(output), len(self))
        logits = read_logits(output)
        if self.kind == "class":
            if logits.ndim != 2:
                raise TargetError(f"a class target reads (B, classes) scores; the model returned {tuple(logits.shape)}")
            return logits.gather(1, self.classes[:, None].to(logits.device))
        rows = torch.arange(len(self), device=logits.device)[:, None]
        picked = logits[rows, self.query.to(logits.device).clamp(max=logits.shape[1] - 1)]
        outputs = self.outputs.to(logits.device)
        if self.score == "logit":
            values = picked.gather(2, outputs[..., None])[..., 0]
        else:
            values = picked.log_softmax(-1).gather(2, outputs[..., None])[..., 0]
            values = values.exp() if self.score == "prob" else values
        return values * self.out_mask.to(values.device)


def read_logits(output: Any) -> torch.Tensor:
    """The logits of a raw output: a tensor, a Hugging Face output or dict (``logits``), a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, dict):
        logits = output.get("logits")
    if logits is None and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise TargetError(f"cannot read logits from the model's output ({type(output).__name__}); "
                          "give a callable target raw_output -> (B,)")
    return logits


def _column(values: Any, batch: int) -> torch.Tensor:
    values = torch.as_tensor(values)
    if values.shape != (batch,):
        raise TargetError(f"the target callable must return one score per text, shape ({batch},); "
                          f"got {tuple(values.shape)}")
    return values[:, None]


def plan_for(model: Any, batch: TextBatch, target: Any, *, score: str | None = None,
             max_new_tokens: int = 1) -> TextPlan:
    """The :class:`TextPlan` of ``target`` on ``batch``.

    One forward without gradients tells a classifier from a causal LM and gives the
    vocabulary or class count; it runs on the first text only when ``target`` is given
    (a ``1/B`` share of a forward), on every text when the top class or the greedy
    continuation must be read (``target=None``, then one more forward per new token)."""
    if score is not None and score not in SCORES:
        raise InputError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    rows = slice(None) if target is None else slice(0, 1)
    with torch.no_grad():
        logits = read_logits(model(batch.ids[rows], batch.mask[rows]))
    lengths = batch.lengths
    base = dict(prompt_len=lengths, pad_id=batch.pad_id)
    continuation = isinstance(target, (str, Continuation)) or (
        isinstance(target, (list, tuple)) and target and all(isinstance(t, str) for t in target))
    if logits.ndim == 3 and not callable(target) or continuation:
        if logits.ndim != 3:
            raise TargetError(f"a continuation is explained on a causal LM, which returns (B, T, vocab) "
                              f"logits; this model returns {tuple(logits.shape)}")
        rows, score = _continuation_rows(model, batch, target, logits, max_new_tokens, score)
        return _joined(batch, rows, score=score, **base)
    common = dict(ids=batch.ids, mask=batch.mask, prompt=batch.mask.clone(), **base)
    if callable(target) and not isinstance(target, torch.Tensor):
        return TextPlan(kind="callable", fn=target, **common)
    if logits.ndim != 2:
        raise TargetError(f"text methods explain a classifier's (B, C) scores or a causal LM's (B, T, V) "
                          f"logits; this model returns {tuple(logits.shape)}: give a callable target")
    classes = _classes(target, logits, len(batch))
    return TextPlan(kind="class", classes=classes, **common)


def _classes(target: Any, logits: torch.Tensor, batch: int) -> torch.Tensor:
    if target is None:
        return logits.argmax(1)
    classes = torch.as_tensor(target, device=logits.device).long().reshape(-1)
    if classes.numel() == 1:
        classes = classes.expand(batch)
    if classes.numel() != batch:
        raise TargetError(f"{batch} texts but {classes.numel()} targets")
    bad = (classes < 0) | (classes >= logits.shape[1])
    if bool(bad.any()):
        raise TargetError(f"target {int(classes[bad][0])} is out of range: the model has {logits.shape[1]} classes")
    return classes


def _continuation_rows(model: Any, batch: TextBatch, target: Any, logits: torch.Tensor,
                       max_new_tokens: int, score: str | None) -> tuple[list[list[int]], str]:
    if isinstance(target, Continuation):
        rows, score = target.ids(batch), score or target.score
    elif target is None:
        rows = greedy(model, batch, logits, max_new_tokens)
    elif isinstance(target, (str, list, tuple)) and not _all_ints(target):
        rows = Continuation(target).ids(batch)
    else:  # an int: the next token of every text; one int per text
        tokens = torch.as_tensor(target).long().reshape(-1)
        if tokens.numel() == 1:
            tokens = tokens.expand(len(batch))
        if tokens.numel() != len(batch):
            raise TargetError(f"{len(batch)} texts but {tokens.numel()} next-token targets; a continuation "
                              "of several tokens is Continuation([...])")
        rows = [[int(t)] for t in tokens]
    vocab = logits.shape[-1]
    bad = [t for r in rows for t in r if not 0 <= t < vocab]
    if bad:
        raise TargetError(f"token id {bad[0]} is out of range: the model's vocabulary has {vocab} tokens")
    return rows, score or "log_prob"


def _all_ints(values: Any) -> bool:
    return all(isinstance(v, numbers.Integral) for v in values)


def greedy(model: Any, batch: TextBatch, logits: torch.Tensor, steps: int) -> list[list[int]]:
    """The model's greedy continuation of each text: ``steps`` tokens, or up to and
    including the end-of-sequence token (one forward per token, no cache)."""
    if not isinstance(steps, numbers.Integral) or steps < 1:
        raise InputError(f"max_new_tokens must be a positive integer, got {steps!r}")
    eos = batch.vocab.eos_id
    lengths = batch.lengths.tolist()
    rows: list[list[int]] = [[] for _ in lengths]
    ids = torch.cat([batch.ids, batch.ids.new_full((len(batch), steps), batch.pad_id)], 1)
    mask = torch.cat([batch.mask, batch.mask.new_zeros((len(batch), steps))], 1)
    for step in range(steps):
        if step:
            with torch.no_grad():
                logits = read_logits(model(ids, mask))
        for i, n in enumerate(lengths):
            done = rows[i] and rows[i][-1] == eos
            if done:
                continue
            token = int(logits[i, n + step - 1].argmax())
            rows[i].append(token)
            ids[i, n + step], mask[i, n + step] = token, True
    return rows


def _joined(batch: TextBatch, rows: list[list[int]], *, score: str, prompt_len: torch.Tensor,
            pad_id: int) -> TextPlan:
    lengths = prompt_len.tolist()
    width = max(len(r) for r in rows)
    total = max(n + len(r) for n, r in zip(lengths, rows))
    ids = batch.ids.new_full((len(batch), total), pad_id)
    mask = batch.mask.new_zeros((len(batch), total))
    outputs = batch.ids.new_zeros((len(batch), width))
    out_mask = batch.mask.new_zeros((len(batch), width))
    for i, (n, r) in enumerate(zip(lengths, rows)):
        ids[i, :n] = batch.ids[i, :n]
        ids[i, n:n + len(r)] = torch.tensor(r, device=ids.device)
        mask[i, :n + len(r)] = True
        outputs[i, :len(r)] = torch.tensor(r, device=ids.device)
        out_mask[i, :len(r)] = True
    prompt = torch.zeros_like(mask)
    for i, n in enumerate(lengths):
        prompt[i, :n] = True
    return TextPlan(kind="continuation", ids=ids, mask=mask, prompt=prompt, prompt_len=prompt_len,
                    pad_id=pad_id, outputs=outputs, out_mask=out_mask, score=score)
