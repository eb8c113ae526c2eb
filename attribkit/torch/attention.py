"""Attention probabilities of a transformer for one call, and the attention family.

timm and torchvision compute attention fused: timm's ``Attention`` calls
``F.scaled_dot_product_attention`` (when ``fused_attn`` is set, the default),
torchvision's ``EncoderBlock`` calls ``nn.MultiheadAttention(...,
need_weights=False)``; neither ever holds the probabilities. For the duration of
a call, :class:`AttentionRecorder`, a :class:`~torch.overrides.TorchFunctionMode`
(the mechanism of :mod:`attribkit.torch.relu`), routes

* ``F.scaled_dot_product_attention(q, k, v, ...)`` through an explicit
  ``A = softmax(q kᵀ · scale + mask)``, output ``A v`` (same scale, masks,
  causal flag and grouped-query heads as the fused kernel);
* ``F.multi_head_attention_forward`` (what ``nn.MultiheadAttention`` runs under a
  mode: its fast path is off while a torch-function mode is active) through the
  same projections, the same explicit ``A`` and the output projection (with
  ``bias_k``/``bias_v``/``add_zero_attn``/static keys, which no vision model uses,
  through its own ``need_weights=True`` path, without gradients);

and records every ``A`` (``(B, heads, N, N)``) in call order, one per block. The
model is never edited: no hook, no flag (timm's ``fused_attn`` stays as it was);
leaving the ``with`` block pops the mode, also on errors. Torch-function modes are
thread-local, so a recorder sees only the forwards of the thread that entered it,
and calls from several threads on one model may run at once.

The maps are over the patch grid of :func:`attribkit.torch.layout.token_layout`
(``prefix_tokens=`` and ``grid=`` override it): the class-token row (token 0)
over the patch tokens, ``(B, 1, gh, gw)``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from attribkit.errors import InvalidOptionError, LayerError
from attribkit.torch.guard import model_guard
from attribkit.torch.layout import Layout, LayoutRequest, token_layout
from attribkit.torch.runner import torch_kernel
from attribkit.torch.targets import ChunkTarget

HEAD_FUSIONS = ("mean", "max", "min")

_MHA_SIGNATURE = inspect.signature(F.multi_head_attention_forward)


def explicit_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                       is_causal: bool = False, scale: float | None = None,
                       enable_gqa: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A v, A)`` with ``A = softmax(q kᵀ · scale + mask)``: what
    ``F.scaled_dot_product_attention`` computes fused (``scale`` defaults to
    ``1/sqrt(head dim)``; a boolean mask keeps the ``True`` positions; dropout, when
    ``dropout_p > 0``, is applied to ``A`` after recording it)."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    logits = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        keep = torch.ones(query.shape[-2], key.shape[-2], dtype=torch.bool,
                          device=query.device).tril()
        logits = logits.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask
    probs = logits.softmax(dim=-1)
    dropped = F.dropout(probs, dropout_p) if dropout_p > 0 else probs
    return dropped @ value, probs


class AttentionRecorder(TorchFunctionMode):
    """Inside ``with AttentionRecorder() as rec:`` every attention computed by
    ``F.scaled_dot_product_attention`` or ``nn.MultiheadAttention`` is computed
    explicitly and its probabilities are appended to ``rec.maps``.

    ``keep_graph=True`` keeps each map in the autograd graph (for gradients with
    respect to it, :func:`generic_attention`); the first attention's inputs are
    then cut from the graph below them (as a fresh leaf), so the gradients exist
    even when no parameter requires them, and only the part of the model after the
    first attention is differentiated.

    ``record=False`` keeps no map: the attention is only computed explicitly, so that
    its graph is twice differentiable (the fused CPU kernels have no double backward;
    :class:`attribkit.training.CAMLoss` differentiates Grad-CAM w.r.t. the parameters).
    """

    def __init__(self, keep_graph: bool = False, record: bool = True) -> None:
        super().__init__()
        self.keep_graph = keep_graph and record
        self.record = record
        self.maps: list[torch.Tensor] = []

    def _record(self, probs: torch.Tensor) -> None:
        if self.record:
            self.maps.append(probs if self.keep_graph else probs.detach())

    def _leaf(self, x: torch.Tensor) -> torch.Tensor:
        if self.keep_graph and torch.is_grad_enabled() and not x.requires_grad:
            return x.detach().requires_grad_(True)
        return x

    def _sdpa(self, args: tuple, kwargs: dict) -> torch.Tensor:
        bound = inspect.signature(explicit_attention).bind(*args, **kwargs)
        bound.arguments["query"] = self._leaf(bound.arguments["query"])
        out, probs = explicit_attention(*bound.args, **bound.kwargs)
        self._record(probs)
        return out

    def _mha(self, func: Any, args: tuple, kwargs: dict) -> Any:
        bound = _MHA_SIGNATURE.bind(*args, **kwargs)
        bound.apply_defaults()
        given = dict(bound.arguments)
        wanted, averaged = given["need_weights"], given["average_attn_weights"]
        unusual = [name for name in ("bias_k", "bias_v", "static_k", "static_v")
                   if given[name] is not None] + (["add_zero_attn"] if given["add_zero_attn"] else [])
        if unusual:
            if self.keep_graph:
                raise LayerError("gradients with respect to nn.MultiheadAttention's probabilities "
                                 f"are not supported with {', '.join(unusual)}")
            given["need_weights"], given["average_attn_weights"] = True, False
            out, weights = func(**given)
        else:
            out, weights = self._explicit_mha(given)
        self._record(weights)
        if not wanted:
            return out, None
        return out, weights.mean(dim=1) if averaged else weights

    def _explicit_mha(self, a: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``F.multi_head_attention_forward`` with explicit attention (sequence-first
        ``(L, B, E)`` tensors, as ``nn.MultiheadAttention`` passes them):
        ``(output, A)``, ``A`` of shape ``(B, heads, L, S)``."""
        query, key, value = a["query"], a["key"], a["value"]
        leaf = self._leaf(query)
        key = leaf if key is query else key
        value = leaf if value is query else value
        query = leaf
        heads = a["num_heads"]
        length, batch, embed = query.shape
        source = key.shape[0]
        if a["use_separate_proj_weight"]:
            weights = (a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"])
        else:
            weights = a["in_proj_weight"].chunk(3)
        biases = a["in_proj_bias"].chunk(3) if a["in_proj_bias"] is not None else (None,) * 3
        split = [F.linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases)]
        q, k, v = (x.reshape(x.shape[0], batch, heads, -1).permute(1, 2, 0, 3) for x in split)
        mask = a["attn_mask"]
        if mask is not None:
            if mask.dtype == torch.bool:  # True = not allowed (the opposite of SDPA's)
                mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(mask, float("-inf"))
            mask = mask.reshape(batch, heads, length, source) if mask.ndim == 3 else mask
        padding = a["key_padding_mask"]
        if padding is not None:
            pad = padding.reshape(batch, 1, 1, source)
            pad = (torch.zeros(pad.shape, dtype=q.dtype, device=q.device).masked_fill(pad, float("-inf"))
                   if pad.dtype == torch.bool else pad.to(q.dtype))
            mask = pad if mask is None else mask + pad
        is_causal = a["is_causal"] and mask is None
        dropout = a["dropout_p"] if a["training"] else 0.0
        heads_out, probs = explicit_attention(q, k, v, mask, dropout, is_causal)
        merged = heads_out.permute(2, 0, 1, 3).reshape(length, batch, embed)
        return F.linear(merged, a["out_proj_weight"], a["out_proj_bias"]), probs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._sdpa(args, kwargs)
        if func is F.multi_head_attention_forward:
            return self._mha(func, args, kwargs)
        return func(*args, **kwargs)


def record_attention(model: nn.Module, inputs: torch.Tensor, *,
                     keep_graph: bool = False) -> tuple[Any, list[torch.Tensor]]:
    """``(scores, maps)``: one forward of the unmodified ``model`` with its attention
    computed explicitly (:class:`AttentionRecorder`); ``LayerError`` if it ran none."""
    recorder = AttentionRecorder(keep_graph=keep_graph)
    with recorder:
        scores = model(inputs)
    if not recorder.maps:
        by_hand = sorted({type(m).__name__ for m in model.modules()
                          if getattr(m, "fused_attn", True) is False})
        hint = (f"; its {', '.join(by_hand)} modules compute attention by hand (timm's "
                "fused_attn=False, the default of Swin's window attention, or TIMM_FUSED_ATTN=0)"
                if by_hand else "")
        raise LayerError(
            f"attention methods read the attention probabilities of F.scaled_dot_product_attention "
            f"and nn.MultiheadAttention calls, and the forward of {type(model).__name__} made "
            f"neither{hint}; they explain ViT-style models (timm and torchvision VisionTransformer)"
        )
    return scores, recorder.maps


def has_attention(model: nn.Module, inputs: torch.Tensor) -> bool:
    """Whether the attention family can read attention in ``model``: one forward of
    ``inputs`` (one image is enough) without gradients, in eval mode (restored),
    under :class:`AttentionRecorder`, runs at least one
    ``F.scaled_dot_product_attention`` or ``nn.MultiheadAttention``. A model that
    raises on the input has none either."""
    recorder = AttentionRecorder()
    try:
        with model_guard(model, exclusive=False), torch.no_grad(), recorder:
            model(inputs)
    except Exception:  # noqa: BLE001 - a model that cannot run this input has no readable attention
        return False
    return bool(recorder.maps)


def token_grid(model: nn.Module, inputs: torch.Tensor, maps: list[torch.Tensor],
               prefix_tokens: int | None, grid: Any) -> Layout:
    """The token layout of the recorded maps: the model's
    (:func:`~attribkit.torch.layout.token_layout`), overridden by ``prefix_tokens=``
    and ``grid=``, checked against every map's ``N``; it must have a class token."""
    request = LayoutRequest.parse("BNC", prefix_tokens, grid)
    found = token_layout(model, tuple(inputs.shape[-2:]))
    prefix = request.prefix_tokens if request.prefix_tokens is not None else (
        found.prefix_tokens if found else None)
    patches = request.grid or (found.grid if found else None)
    if prefix is None or patches is None:
        raise LayerError(
            f"attribkit cannot read the class token and patch grid of {type(model).__name__} (it "
            "knows timm's and torchvision's VisionTransformer); pass prefix_tokens= (tokens "
            "before the patches, the class token first) and grid=(patch rows, patch columns)"
        )
    tokens = prefix + patches[0] * patches[1]
    shapes = {tuple(m.shape[-2:]) for m in maps}
    if shapes != {(tokens, tokens)}:
        raise LayerError(
            f"attention methods need global self-attention over the {prefix} prefix and "
            f"{patches[0]}x{patches[1]} patch tokens ({tokens} tokens) in every block; "
            f"{type(model).__name__} attends over {sorted(shapes)} (windowed attention, as in "
            "Swin, or other tokens); pass prefix_tokens= and grid= if they are wrong"
        )
    if prefix < 1:
        raise LayerError(f"attention methods read the class token's row, and {type(model).__name__} "
                         "has no prefix token (global average pooling); use gradcam on a block")
    source = found.source if found and request.prefix_tokens is None else "prefix_tokens=/grid="
    return Layout("BNC", prefix, patches, source)


def fuse_heads(attention: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """``(B, heads, N, N)`` -> ``(B, N, N)``: mean, max or min over the heads."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise InvalidOptionError(f"head_fusion must be one of {', '.join(map(repr, HEAD_FUSIONS))}, "
                             f"got {head_fusion!r}")


def class_token_map(relevance: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Row 0 (the class token) of ``(B, N, N)`` over the patch tokens, ``(B, 1, gh, gw)``."""
    gh, gw = layout.grid  # type: ignore[misc]
    return relevance[:, 0, layout.prefix_tokens:].reshape(len(relevance), 1, gh, gw)


def discard_lowest(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the ``floor(ratio · N²)`` smallest entries of each image's ``(N, N)``
    fused attention, never the class token's attention to itself (entry ``[0, 0]``)."""
    flat = fused.flatten(1)
    count = int(flat.shape[1] * ratio)
    if count == 0:
        return fused
    drop = torch.zeros_like(flat, dtype=torch.bool)
    drop.scatter_(1, flat.topk(count, dim=1, largest=False).indices, True)
    drop[:, 0] = False
    return flat.masked_fill(drop, 0).reshape(fused.shape)


def rollout(maps: list[torch.Tensor], head_fusion: str = "mean",
            discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, arXiv:2005.00928), ``(B, N, N)``:
    per block ``Ã = 0.5·fuse_heads(A) + 0.5·I`` with rows renormalised to sum 1
    (after :func:`discard_lowest` when ``discard_ratio > 0``), ``R = Ã_L ⋯ Ã_1``."""
    result = None
    for attention in maps:
        fused = discard_lowest(fuse_heads(attention, head_fusion), discard_ratio)
        eye = torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
        mixed = 0.5 * fused + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result  # type: ignore[return-value]


def generic_relevance(maps: list[torch.Tensor], grads: list[torch.Tensor]) -> torch.Tensor:
    """Chefer, Gur & Wolf 2021 (ICCV, arXiv:2103.15679), self-attention rule,
    ``(B, N, N)``: ``R = I``; per block in forward order
    ``R ← R + E_h[(∇A ⊙ A)⁺] · R``."""
    relevance = None
    for attention, grad in zip(maps, grads):
        weighted = (grad * attention).clamp(min=0).mean(dim=1)
        if relevance is None:
            relevance = torch.eye(weighted.shape[-1], dtype=weighted.dtype,
                                  device=weighted.device).expand_as(weighted)
        relevance = relevance + weighted @ relevance
    return relevance  # type: ignore[return-value]


def _check_ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise InvalidOptionError(f"discard_ratio must be a number in [0, 1), got {value!r}")
    return float(value)


@torch_kernel(autograd=False, thread_safe=True)
def raw_attention(model, inputs, target, *, head_fusion: str = "mean",
                  prefix_tokens: int | None = None, grid: Any = None) -> torch.Tensor:
    """Raw attention: the last block's class-token attention over the patch tokens,
    heads fused by ``head_fusion`` (mean by default), ``(B, 1, gh, gw)``
    (class-agnostic)."""
    fuse_heads(inputs.new_zeros(1, 1, 1, 1), head_fusion)  # a bad option fails before the forward
    with torch.no_grad():
        _, maps = record_attention(model, inputs)
        layout = token_grid(model, inputs, maps, prefix_tokens, grid)
        return class_token_map(fuse_heads(maps[-1], head_fusion), layout)


@torch_kernel(autograd=False, thread_safe=True)
def attention_rollout(model, inputs, target, *, head_fusion: str = "mean", discard_ratio: float = 0.0,
                      prefix_tokens: int | None = None, grid: Any = None) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, arXiv:2005.00928): the class-token
    row of :func:`rollout` over the patch tokens, ``(B, 1, gh, gw)`` (class-agnostic)."""
    fuse_heads(inputs.new_zeros(1, 1, 1, 1), head_fusion)
    ratio = _check_ratio(discard_ratio)
    with torch.no_grad():
        _, maps = record_attention(model, inputs)
        layout = token_grid(model, inputs, maps, prefix_tokens, grid)
        return class_token_map(rollout(maps, head_fusion, ratio), layout)


@torch_kernel(thread_safe=True)
def generic_attention(model, inputs, target: ChunkTarget, *, prefix_tokens: int | None = None,
                      grid: Any = None) -> torch.Tensor:
    """Generic attention explainability (Chefer, Gur & Wolf 2021, ICCV,
    arXiv:2103.15679): the class-token row of :func:`generic_relevance` over the patch
    tokens, ``∇A`` being the gradient of the target score with respect to each
    block's attention probabilities, ``(B, 1, gh, gw)``."""
    scores, maps = record_attention(model, inputs, keep_graph=True)
    layout = token_grid(model, inputs, maps, prefix_tokens, grid)
    score = target.select(scores)
    if not score.requires_grad:
        raise LayerError("the target score does not depend on the model's attention")
    grads = torch.autograd.grad(score.sum(), maps, allow_unused=True)
    grads = [torch.zeros_like(m) if g is None else g for m, g in zip(maps, grads)]
    maps = [m.detach() for m in maps]
    return class_token_map(generic_relevance(maps, grads), layout)
