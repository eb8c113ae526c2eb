"""Occlusion of tokens and spans (a text kernel, see :mod:`attribkit.text.runner`).

Each span of ``span`` consecutive prompt tokens is replaced by a baseline token id
(``baseline=None``: the tokenizer's padding id, else 0; or a given id), and the drop of
every score of the row is recorded: ``d = score(original) - score(occluded)``, per output
token. Spans start every ``stride`` tokens (default ``span``):

- ``stride == span`` (the default): the prompt is cut into consecutive groups and every
  token of a group gets the group's drop, as Captum's ``FeatureAblation`` with a feature
  mask (``span=1``: ``LLMAttribution(FeatureAblation)`` with ``TextTokenInput``);
- ``stride < span``: sliding windows, each token gets the mean drop of the windows
  covering it, as Captum's ``Occlusion`` with ``sliding_window_shapes=(span,)`` and as
  attribkit's occlusion of images (the last window is clipped at the prompt's end).

Tokens whose id is in ``skip_tokens`` are never occluded and get zero (Captum's
``TextTokenInput(skip_tokens=...)``: spans run over the remaining tokens); e.g.
``skip_tokens=tok.all_special_ids`` leaves ``[CLS]``/``[SEP]`` in place. A prompt shorter
than ``span`` is occluded whole. The occluded copies of all rows of a chunk are scored
together, ``forward_batch_size`` rows per forward (default: what the memory budget holds,
at most 256).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

from attribkit.errors import InvalidOptionError
from attribkit.perturbation.masks import DEFAULT_ROWS
from attribkit.perturbation.occlusion import window_starts
from attribkit.text.model import TextModel
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan
from attribkit.torch.chunking import ActivationMeter, rows_per_chunk

def _count(value: Any, name: str, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise InvalidOptionError(f"occlusion {name} must be a positive integer, got {value!r}")
    return int(value)


def baseline_token(model: TextModel, plan: TextPlan, baseline: Any) -> int:
    """The baseline token id: ``None`` gives the plan's padding id; an int is range-checked
    against the embedding table."""
    if baseline is None:
        return int(plan.pad_id)
    if not isinstance(baseline, numbers.Integral) or isinstance(baseline, bool):
        raise InvalidOptionError(f"occlusion baseline must be a token id (int) or None on text, got {baseline!r}")
    size = getattr(model.embedding, "num_embeddings", None)
    if baseline < 0 or (size is not None and baseline >= size):
        raise InvalidOptionError(f"occlusion baseline token {baseline} is out of range: the embedding "
                                 f"has {size} tokens")
    return int(baseline)


def skipped(ids: torch.Tensor, skip_tokens: Any) -> torch.Tensor:
    """``(B, L)`` bool, ``True`` on tokens whose id is in ``skip_tokens`` (a list of ints)."""
    if skip_tokens is None:
        return torch.zeros_like(ids, dtype=torch.bool)
    if (not isinstance(skip_tokens, Sequence) or isinstance(skip_tokens, str)
            or not all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in skip_tokens)):
        raise InvalidOptionError(f"occlusion skip_tokens must be a list of token ids (ints), got {skip_tokens!r}")
    return torch.isin(ids, torch.tensor(list(skip_tokens), dtype=ids.dtype, device=ids.device))


def occlusion_masks(kept: torch.Tensor, span: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The occlusions of rows with ``kept`` ``(B, L)`` occludable tokens: ``(row, masks)``,
    the row of each occlusion ``(P,)`` and its positions ``(P, L)`` bool (window ``span``,
    clipped to the row's tokens, every ``stride`` of its kept tokens)."""
    order = kept.long().cumsum(1) - 1  # index of each kept token among its row's kept tokens
    rows, starts, widths = [], [], []
    for i, n in enumerate(kept.sum(1).tolist()):
        if not n:
            continue
        width = min(span, n)
        for start in window_starts(n, width, stride):
            rows.append(i)
            starts.append(start)
            widths.append(width)
    device = kept.device
    row = torch.tensor(rows, dtype=torch.long, device=device)
    start = torch.tensor(starts, dtype=torch.long, device=device)[:, None]
    stop = start + torch.tensor(widths, dtype=torch.long, device=device)[:, None]
    position = order[row]
    return row, kept[row] & (position >= start) & (position < stop)


def _check_occlusion(model: TextModel, *, baseline: Any = None, span: int = 1, stride: int | None = None,
                     skip_tokens: Sequence[int] | None = None, forward_batch_size: int | None = None) -> None:
    _count(span, "span")
    if stride is not None:
        _count(stride, "stride")
    _count(forward_batch_size, "forward_batch_size", optional=True)
    if baseline is not None:
        baseline_token(model, None, baseline)  # type: ignore[arg-type]
    skipped(torch.zeros((1, 1), dtype=torch.long), skip_tokens)


@text_kernel(autograd=False, check=_check_occlusion)
def occlusion(model: TextModel, plan: TextPlan, *, baseline: Any = None, span: int = 1,
              stride: int | None = None, skip_tokens: Sequence[int] | None = None,
              forward_batch_size: int | None = None) -> torch.Tensor:
    """Score drops when spans of prompt tokens are replaced by ``baseline``, ``(b, width, L)``
    (see the module docstring)."""
    span = _count(span, "span")
    stride = span if stride is None else _count(stride, "stride")
    step = _count(forward_batch_size, "forward_batch_size", optional=True)
    token = baseline_token(model, plan, baseline)
    kept = plan.prompt & ~skipped(plan.ids, skip_tokens)
    meter = ActivationMeter(model.model)
    with meter:
        clean = plan.scores(model(plan.ids, plan.mask))
    row, masks = occlusion_masks(kept, span, stride)
    values = clean.new_zeros((len(plan), plan.width, plan.ids.shape[1]))
    if not len(row):
        return values
    if step is None:
        step = min(DEFAULT_ROWS, rows_per_chunk(meter.row_bytes(plan.ids, grad=False), total=len(row)))
    drops = []
    for start in range(0, len(row), step):
        index, occluded = row[start:start + step], masks[start:start + step]
        part = plan.rows(index)
        ids = part.ids.masked_fill(occluded, token)
        drops.append(clean[index] - part.scores(model(ids, part.mask)))
    drops = torch.cat(drops)
    weights = masks.to(drops.dtype)
    values.index_add_(0, row, drops[:, :, None] * weights[:, None, :])
    counts = weights.new_zeros(kept.shape).index_add_(0, row, weights)
    return values / counts.clamp(min=1)[:, None, :]
