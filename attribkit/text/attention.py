"""Attention methods on text (text kernels, see :mod:`attribkit.text.runner`).

The attention probabilities ``A`` (``(b, heads, L, L)`` per block) of one forward:

- a model that attends with ``F.scaled_dot_product_attention`` (Hugging Face's default
  ``attn_implementation="sdpa"``: BERT, GPT-2, LLaMA, ...) or ``nn.MultiheadAttention``
  is run under :class:`~attribkit.torch.attention.AttentionRecorder`, the interception
  the vision transformers use: the fused call is computed explicitly, with the mask
  Hugging Face passes (padding and causal, one boolean ``(b, 1, L, L)`` mask) and
  grouped-query heads repeated to the query heads;
- a Hugging Face model in ``attn_implementation="eager"`` computes the softmax itself:
  its ``output_attentions=True`` is read (the model and its config are left as they were).

Which row is explained, ``row=``:

- ``"auto"`` (default): a model whose attention has any weight above the diagonal
  between real tokens is **bidirectional** (an encoder: BERT) and the first token's row
  is read (``[CLS]``, what the classifier's pooler reads), for every score; otherwise
  the model is **causal** and each score reads the row of the position that predicts it
  (:attr:`TextPlan.query`: the last prompt token, then one per output token). A text of
  one token has no entry above the diagonal, but then both rules read position 0.
- ``"first"`` or ``"query"``: that rule, whatever the attention looks like.

Padded keys get zero attention (the mask), so a real row never mixes in a padded one;
padded rows themselves are set to zero before any product, so they cannot carry
non-finite values either. Methods (formulas in ``docs/transformers.md``):

- ``raw_attention``: the explained row of the last block's attention, heads fused.
- ``attention_rollout`` (Abnar & Zuidema 2020): the explained row of
  ``Ã_L ⋯ Ã_1``, ``Ã = rownorm(0.5·fuse(A) + 0.5·I)``, computed as a row vector times
  the blocks from the last to the first (no ``L × L`` product).
- ``generic_attention`` (Chefer, Gur & Wolf 2021): ``R = I``, per block
  ``R ← R + E_h[(∇A ⊙ A)⁺] R``, ``∇A`` the gradient of each score (one backward per
  output token), the explained row of ``R``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from attribkit.errors import InvalidOptionError, LayerError
from attribkit.text.model import TextModel
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan
from attribkit.torch.attention import AttentionRecorder, fuse_heads

ROWS = ("auto", "first", "query")


def _check_options(_model: TextModel, *, head_fusion: str = "mean", row: str = "auto") -> None:
    _check(head_fusion, row)


def _check(head_fusion: str, row: str) -> None:
    fuse_heads(torch.zeros(1, 1, 1, 1), head_fusion)  # a bad head_fusion fails before the forward
    if row not in ROWS:
        raise InvalidOptionError(f"row must be one of {', '.join(map(repr, ROWS))}, got {row!r}")


def _eager(model: TextModel) -> bool:
    """Whether ``model`` is a Hugging Face model computing attention by hand (eager)."""
    config = getattr(model.model, "config", None)
    return getattr(config, "_attn_implementation", None) == "eager"


def attention_maps(model: TextModel, plan: TextPlan, *,
                   keep_graph: bool = False) -> tuple[Any, list[torch.Tensor]]:
    """``(raw output, maps)``: one forward of ``plan``'s rows and every block's attention
    probabilities ``(b, heads, L, L)``, in call order (see the module docstring).
    ``keep_graph``: the maps stay in the autograd graph (the token embeddings are made a
    leaf, so they depend on the input even when no parameter requires a gradient)."""
    extra = {"output_attentions": True} if _eager(model) else {}
    embeds = model.embed(plan.ids, plan.mask).detach().requires_grad_() if keep_graph else None
    recorder = AttentionRecorder(keep_graph=keep_graph)
    with recorder:
        output = model(plan.ids, plan.mask, embeds, **extra)
    maps = list(recorder.maps)
    if not maps and extra:
        maps = [a if keep_graph else a.detach() for a in getattr(output, "attentions", None) or ()]
    name = type(model.model).__name__
    if not maps:
        implementation = getattr(getattr(model.model, "config", None), "_attn_implementation", None)
        raise LayerError(
            f"attention methods read the attention probabilities of F.scaled_dot_product_attention or "
            f"nn.MultiheadAttention calls (Hugging Face's attn_implementation='sdpa'), or the "
            f"output_attentions of attn_implementation='eager'; the forward of {name} gave neither"
            + (f" (attn_implementation={implementation!r})" if implementation else ""))
    length = plan.ids.shape[1]
    shapes = sorted({tuple(m.shape) for m in maps})
    if any(m.ndim != 4 or m.shape[0] != len(plan) or m.shape[-2:] != (length, length) for m in maps):
        raise LayerError(f"attention methods on text need self-attention over the {length} positions "
                         f"of each row in every block, (b, heads, {length}, {length}); {name} "
                         f"attends with {shapes}")
    return output, maps


def real_rows(maps: list[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
    """``maps`` with the rows of padded positions set to zero (also non-finite ones)."""
    if bool(mask.all()):  # no padded row (only those can hold non-finite values)
        return maps
    keep = mask[:, None, :, None].to(maps[0].device)
    return [torch.where(keep, m, torch.zeros((), dtype=m.dtype, device=m.device)) for m in maps]


def is_bidirectional(maps: list[torch.Tensor], mask: torch.Tensor) -> bool:
    """Whether any block gives a real token weight on a later real token (the first
    block that does ends the search)."""
    length = mask.shape[1]
    mask = mask.to(maps[0].device)
    later = torch.ones(length, length, dtype=torch.bool, device=mask.device).triu(1)
    pairs = (mask[:, :, None] & mask[:, None, :] & later)[:, None]
    return any(bool(((m > 0) & pairs).any()) for m in maps)


def explained_rows(plan: TextPlan, maps: list[torch.Tensor], row: str) -> torch.Tensor:
    """``(b, width)`` the row of the attention each score is read from (``row=``, see the
    module docstring; the columns past the end of a shorter continuation, which the runner
    zeros, read the last position)."""
    query = plan.query.to(maps[0].device).clamp(max=plan.ids.shape[1] - 1)
    first = row == "first" or (row == "auto" and is_bidirectional(maps, plan.mask))
    return torch.zeros_like(query) if first else query


def _selector(rows: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """``(b, width, L)`` one-hot rows."""
    return F.one_hot(rows, length).to(dtype)


def rollout_rows(maps: list[torch.Tensor], rows: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """``(b, width, L)``: rows ``rows`` of ``Ã_L ⋯ Ã_1`` (attention rollout), as
    ``e_rowᵀ Ã_L ⋯ Ã_1`` from the left."""
    vectors = _selector(rows, maps[0].shape[-1], maps[0].dtype)
    for attention in reversed(maps):
        fused = fuse_heads(attention, head_fusion)
        # Ã = D⁻¹(A + I)/2 with D the row sums of (A + I)/2, applied to v without forming Ã
        scaled = vectors / (0.5 * fused.sum(dim=-1) + 0.5)[:, None, :]
        vectors = 0.5 * (scaled @ fused) + 0.5 * scaled
    return vectors


def generic_rows(maps: list[torch.Tensor], grads: list[torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
    """``(b, L)``: row ``rows`` (``(b,)``) of Chefer's ``R`` (``R = I``, ``R ← R + W R``
    per block, ``W = E_h[(∇A ⊙ A)⁺]``), i.e. ``e_rowᵀ (I + W_L) ⋯ (I + W_1)``."""
    vector = _selector(rows, maps[0].shape[-1], maps[0].dtype)
    for attention, grad in zip(reversed(maps), reversed(grads)):
        weighted = (grad * attention).clamp(min=0).mean(dim=1)
        vector = vector + (vector[:, None] @ weighted)[:, 0]
    return vector


@text_kernel(autograd=False, check=_check_options)
def raw_attention(model: TextModel, plan: TextPlan, *, head_fusion: str = "mean",
                  row: str = "auto") -> torch.Tensor:
    """The explained row of the last block's attention, heads fused by ``head_fusion``
    (mean, max or min), ``(b, width, L)`` (target-agnostic)."""
    _check(head_fusion, row)
    _, maps = attention_maps(model, plan)
    maps = real_rows(maps, plan.mask)
    rows = explained_rows(plan, maps, row)
    fused = fuse_heads(maps[-1], head_fusion)
    return fused.gather(1, rows[:, :, None].expand(-1, -1, fused.shape[-1]))


@text_kernel(autograd=False, check=_check_options)
def attention_rollout(model: TextModel, plan: TextPlan, *, head_fusion: str = "mean",
                      row: str = "auto") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, arXiv:2005.00928): the explained row of
    ``Ã_L ⋯ Ã_1``, ``(b, width, L)`` (target-agnostic)."""
    _check(head_fusion, row)
    _, maps = attention_maps(model, plan)
    maps = real_rows(maps, plan.mask)
    return rollout_rows(maps, explained_rows(plan, maps, row), head_fusion)


@text_kernel(check=_check_options)
def generic_attention(model: TextModel, plan: TextPlan, *, row: str = "auto") -> torch.Tensor:
    """Generic attention explainability (Chefer, Gur & Wolf 2021, ICCV, arXiv:2103.15679):
    the explained row of the relevance ``R`` of each score, ``(b, width, L)``."""
    _check("mean", row)
    output, recorded = attention_maps(model, plan, keep_graph=True)
    scores = plan.scores(output)
    if not scores.requires_grad:
        raise LayerError("the target score does not depend on the model's attention")
    maps = real_rows([m.detach() for m in recorded], plan.mask)
    rows = explained_rows(plan, maps, row)
    columns = []
    for j in range(scores.shape[1]):
        grads = torch.autograd.grad(scores[:, j].sum(), recorded, retain_graph=j + 1 < scores.shape[1],
                                    allow_unused=True)
        grads = real_rows([torch.zeros_like(m) if g is None else g for m, g in zip(maps, grads)], plan.mask)
        columns.append(generic_rows(maps, grads, rows[:, j]))
    return torch.stack(columns, 1)
