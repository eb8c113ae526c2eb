"""The functional operations of a transformer, routed through LRP rules for a call.

Attention, normalisation, residual sums and position embeddings are not modules in
timm's and torchvision's vision transformers: they are functional calls inside a
block's ``forward`` (``x + pos_embed``, ``x + attn(norm1(x))``, ``F.layer_norm``,
``F.scaled_dot_product_attention``, ``F.multi_head_attention_forward``). For the
duration of the model's forward, :class:`RelevanceMode`, a
:class:`~torch.overrides.TorchFunctionMode` (the mechanism of
:class:`~attribkit.torch.attention.AttentionRecorder`, which it extends), sends each
such call whose operands depend on the input through the rules of
:mod:`attribkit.torch.lrp.transformer_rules`:

* ``F.scaled_dot_product_attention`` and ``F.multi_head_attention_forward`` are
  computed explicitly (``softmax(q kᵀ · scale + mask) v``, the projections of
  ``nn.MultiheadAttention``), with the rules below applied to each operation;
* sums and differences: the epsilon rule of a sum; products and matrix products: the
  uniform rule (two live operands) or the epsilon rule (one); a scale passes relevance;
  CP-LRP holds the activated factor of a gated product (``silu(x₁) ⊙ x₂``) constant, as
  LXT does, so that all its relevance goes to the other factor;
* softmax: the AttnLRP Taylor rule, or (CP-LRP) its output held constant;
* ``F.layer_norm`` / ``F.rms_norm``: the normalisation with ``σ`` constant;
* ``F.linear`` without a module: the composite's linear rule;
* elementwise activations (GELU, SiLU, ...) and negation: relevance passed on;
* means, sums, average pooling: the epsilon rule of a parameter-free linear map;
* an operation with no rule that would change relevance (``exp``, ``sqrt``, a division
  by a live tensor, an in-place update): :class:`LRPRuleError`, naming it.

Reshapes, indexing, concatenation and copies keep their gradient, which moves
relevance with the values. The model's parameters do not require grad during the
forward (restored afterwards), so "live" means "depends on the input". The mode is
thread-local, like the recorder's.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attribkit.torch.attention import _MHA_SIGNATURE, AttentionRecorder
from attribkit.torch.lrp.composites import LRPRuleError
from attribkit.torch.lrp.rules import AffineRule, NormRule, PassRule, Rules
from attribkit.torch.lrp.transformer_rules import (
    FunctionalLinear,
    ProductRule,
    ScaleRule,
    SoftmaxRule,
    SumRule,
    normalization,
)

T = torch.Tensor
ADD = {torch.add: 1.0, T.add: 1.0, T.__add__: 1.0, T.__radd__: 1.0, T.__iadd__: 1.0,
       torch.sub: -1.0, T.sub: -1.0, T.__sub__: -1.0, T.__isub__: -1.0, T.__rsub__: -1.0}
MUL = {torch.mul, T.mul, T.__mul__, T.__rmul__, T.__imul__}
DIV = {torch.div, T.div, T.__truediv__, T.__itruediv__}
MATMUL = {torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm}
SOFTMAX = {torch.softmax, T.softmax, F.softmax}
PASS = {F.gelu, F.silu, F.relu, torch.relu, T.relu, F.elu, F.leaky_relu, F.hardswish, F.mish,
        F.softplus, torch.tanh, T.tanh, F.tanh, torch.sigmoid, T.sigmoid, F.sigmoid, F.relu6}
NEG = {torch.neg, T.neg, T.__neg__, torch.negative, T.negative}
MEANS = {torch.mean, T.mean, torch.sum, T.sum, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
         F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}
#: operations that change relevance and have no rule here
NO_RULE = {torch.exp, T.exp, torch.log, T.log, torch.pow, T.pow, T.__pow__, T.__rpow__,
           torch.sqrt, T.sqrt, torch.rsqrt, T.rsqrt, torch.reciprocal, T.reciprocal, torch.var,
           T.var, torch.std, T.std, torch.var_mean, F.normalize, F.group_norm, F.batch_norm,
           F.instance_norm, F.log_softmax, torch.log_softmax, T.log_softmax, T.__rtruediv__,
           T.add_, T.sub_, T.mul_, T.div_, T.relu_, torch.relu_,
           T.addmm, torch.addmm, torch.baddbmm, T.baddbmm, F.conv1d, F.conv2d, F.conv3d,
           F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, torch.cumsum, T.cumsum,
           F.interpolate, torch.lerp, T.lerp, torch.addcmul, T.addcmul, torch.addcdiv, T.addcdiv,
           torch.abs, T.abs, T.__abs__, torch.erf, T.erf, torch.sin, torch.cos, T.sin, T.cos}
_LAYER_NORM = inspect.signature(F.layer_norm)
_RMS_NORM = inspect.signature(F.rms_norm)


def _live(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _is_gate(t: torch.Tensor) -> bool:
    """Whether ``t`` is an elementwise activation's output (the gate of ``silu(x₁) ⊙ x₂``)."""
    return getattr(t.grad_fn, "_forward_cls", None) is PassRule


def _name(func: Any) -> str:
    owner = getattr(func, "__objclass__", None)
    prefix = "Tensor." if owner is torch.Tensor else ("torch." if func in vars(torch).values() else "")
    return prefix + getattr(func, "__name__", repr(func))


class RelevanceMode(AttentionRecorder):
    """Inside ``with RelevanceMode(rules):`` a forward computes the transformer
    operations through LRP rules (``rules.attention``: ``"attnlrp"`` or ``"cp_lrp"``)."""

    def __init__(self, rules: Rules) -> None:
        super().__init__(record=False)
        self.rules = rules
        self.stabilizer = rules.stabilizer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            with self:  # the explicit attention's operations come back here
                return self._sdpa(args, kwargs)
        if func is F.multi_head_attention_forward:
            return self._attention_module(func, args, kwargs)
        tensors = list(args[1] if func is torch.einsum and len(args) == 2 and isinstance(
            args[1], (list, tuple)) else args) + list(kwargs.values())
        if not any(_live(t) for t in tensors):
            return func(*args, **kwargs)
        return self._rule(func, args, kwargs)

    def _attention_module(self, func: Any, args: tuple, kwargs: dict) -> Any:
        given = _MHA_SIGNATURE.bind(*args, **kwargs).arguments
        unusual = [n for n in ("bias_k", "bias_v", "static_k", "static_v") if given.get(n) is not None]
        if given.get("add_zero_attn") or unusual:
            raise LRPRuleError("LRP has no rule for nn.MultiheadAttention with "
                               f"{', '.join(unusual) or 'add_zero_attn'}")
        with self:
            return self._mha(func, args, kwargs)

    def _rule(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if func in ADD and "out" not in kwargs:
            return self._sum(func, args, kwargs)
        if func in MUL:
            return self._product(args[0], args[1], torch.mul)
        if func in DIV and not kwargs.get("rounding_mode") and not _live(args[1]):
            return ScaleRule.apply(args[0], lambda t: func(t, *args[1:], **kwargs))
        if func is T.__rmatmul__:
            return self._product(args[1], args[0], torch.matmul)
        if func in MATMUL:
            return self._product(args[0], args[1], torch.matmul if func not in (torch.bmm, T.bmm)
                                 else torch.bmm)
        if func is torch.einsum:
            operands = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
            if len(operands) == 2:
                return self._product(*operands, lambda a, b: torch.einsum(args[0], a, b))
        if func in SOFTMAX:
            return self._softmax(func, args, kwargs)
        if func is F.layer_norm:
            a = _LAYER_NORM.bind(*args, **kwargs).arguments
            return normalization(a["input"], lambda x: func(x, *args[1:], **kwargs),
                                 a["normalized_shape"], a.get("weight"), a.get("eps", 1e-5),
                                 centre=True, stabilizer=self.stabilizer)
        if func is F.rms_norm:
            a = _RMS_NORM.bind(*args, **kwargs).arguments
            return normalization(a["input"], lambda x: func(x, *args[1:], **kwargs),
                                 a["normalized_shape"], a.get("weight"), a.get("eps"),
                                 centre=False, stabilizer=self.stabilizer)
        if func is F.linear and not _live(args[1] if len(args) > 1 else kwargs.get("weight")):
            a = inspect.signature(lambda input, weight, bias=None: None).bind(*args, **kwargs).arguments
            return AffineRule.apply(a["input"], FunctionalLinear(a["weight"], a.get("bias")),
                                    self.rules.linear)
        if func in NEG:  # z = -x: the epsilon rule of a diagonal map, R passed on
            return ScaleRule.apply(args[0], lambda t: func(t))
        if func in PASS and _live(args[0]):
            options = {k: v for k, v in kwargs.items() if k != "inplace"}
            return PassRule.apply(args[0], lambda t: func(t, *args[1:], **options))
        if func in MEANS and _live(args[0]):
            return NormRule.apply(args[0], lambda t: func(t, *args[1:], **kwargs), self.stabilizer)
        if func in NO_RULE or func in DIV or func is F.linear or func is torch.einsum:
            raise LRPRuleError(
                f"LRP has no rule for {_name(func)} on values that depend on the input (a "
                "normalisation or activation written by hand, or an in-place update?); the "
                "transformer composites cover attention, LayerNorm/RMSNorm, sums, products, "
                "softmax and elementwise activations")
        return func(*args, **kwargs)

    def _sum(self, func: Any, args: tuple, kwargs: dict) -> torch.Tensor:
        a, b = args[0], args[1] if len(args) > 1 else kwargs["other"]
        if func is T.__rsub__:  # other - self
            a, b = torch.as_tensor(b, dtype=a.dtype, device=a.device), a
        alpha = ADD[func] * kwargs.get("alpha", 1)
        if not isinstance(b, torch.Tensor):
            b = torch.as_tensor(b, dtype=a.dtype, device=a.device)
        return SumRule.apply(a, b, alpha, self.stabilizer)

    def _product(self, a: Any, b: Any, fn: Callable) -> torch.Tensor:
        if fn is torch.mul and self.rules.attention == "cp_lrp" and _live(a) and _live(b) \
                and _is_gate(a) != _is_gate(b):  # CP-LRP: the activated factor is a constant gate
            a, b = (a.detach(), b) if _is_gate(a) else (a, b.detach())
        if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or (
                fn is torch.mul and not (_live(a) and _live(b))):
            live, other = (a, b) if _live(a) else (b, a)
            return ScaleRule.apply(live, lambda t: fn(t, other))
        return ProductRule.apply(a, b, fn, self.stabilizer)

    def _softmax(self, func: Any, args: tuple, kwargs: dict) -> torch.Tensor:
        x = args[0]
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        if dim is None:
            raise LRPRuleError("LRP's softmax rule needs the softmax dimension (dim=)")

        def fn(t: torch.Tensor) -> torch.Tensor:
            return func(t, *args[1:], **kwargs)
        if self.rules.attention == "cp_lrp":
            return fn(x.detach())  # CP-LRP: the attention probabilities are constants
        return SoftmaxRule.apply(x, fn, dim)


@contextlib.contextmanager
def relevance_mode(model: nn.Module, rules: Rules) -> Iterator[None]:
    """For the body (the model's forward): the model's parameters do not require grad
    (restored in ``finally``) and, with a transformer composite, :class:`RelevanceMode`
    is active. With a CNN composite, nothing changes."""
    if rules.attention is None:
        yield
        return
    frozen = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        with RelevanceMode(rules):
            yield
    finally:
        for p in frozen:
            p.requires_grad_(True)
