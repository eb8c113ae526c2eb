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

* ``F.scaled_dot_product_attention``: fused, with the gradients of ``q``, ``k``, ``v``
  scaled by the uniform rule's shares (AttnLRP) or ``q``, ``k`` cut (CP-LRP: constant
  attention); ``F.multi_head_attention_forward``: computed explicitly, its products and
  softmax through the rules below;
* products and matrix products of two live operands (also inside ``addmm`` /
  ``baddbmm``): the uniform rule (the gradient halved); CP-LRP holds the activated factor of a gated product (``silu(x₁) ⊙ x₂``)
  constant, as LXT does, so that all its relevance goes to the other factor;
* softmax: the AttnLRP Taylor rule (its gradient), or (CP-LRP) its output held constant;
* ``F.layer_norm`` / ``F.rms_norm``: the normalisation with ``σ`` constant;
* ``F.linear`` without a module: the composite's linear rule;
* elementwise activations (GELU, SiLU, ...): the identity rule;
* sums, differences, scales, negation, means, average pooling: their gradient (the
  epsilon rule of a sum or of a parameter-free linear map, in gradient form);
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
from attribkit.torch.lrp.rules import Rules
from attribkit.torch.lrp.transformer_rules import (
    FunctionalLinear,
    affine,
    identity,
    is_activated,
    layer_norm,
    exact_of,
    rms_norm,
    scaled,
)

T = torch.Tensor
#: in-place operators, computed out of place (an autograd rule may hold the tensor)
INPLACE = {T.__iadd__: T.__add__, T.__isub__: T.__sub__, T.__itruediv__: T.__truediv__}
MUL = {torch.mul, T.mul, T.__mul__, T.__rmul__, T.__imul__}
DIV = {torch.div, T.div, T.__truediv__, T.__itruediv__}
MATMUL = {torch.matmul, T.matmul, T.__matmul__, torch.bmm, T.bmm}
#: ``beta·input + alpha·(a @ b)``: a sum and a product (BLOOM's ALiBi scores)
PRODUCT_SUMS = {torch.addmm, T.addmm, torch.baddbmm, T.baddbmm, torch.addbmm, T.addbmm}
SOFTMAX = {torch.softmax, T.softmax, F.softmax}
PASS = {F.gelu, F.silu, F.relu, torch.relu, T.relu, F.elu, F.leaky_relu, F.hardswish, F.mish,
        F.softplus, torch.tanh, T.tanh, F.tanh, torch.sigmoid, T.sigmoid, F.sigmoid, F.relu6}
#: operations that change relevance and have no rule here
NO_RULE = {torch.exp, T.exp, torch.log, T.log, torch.pow, T.pow, T.__pow__, T.__rpow__,
           torch.sqrt, T.sqrt, torch.rsqrt, T.rsqrt, torch.reciprocal, T.reciprocal, torch.var,
           T.var, torch.std, T.std, torch.var_mean, F.normalize, F.group_norm, F.batch_norm,
           F.instance_norm, F.log_softmax, torch.log_softmax, T.log_softmax, T.__rtruediv__,
           T.add_, T.sub_, T.mul_, T.div_, T.relu_, torch.relu_,
           F.conv1d, F.conv2d, F.conv3d,
           F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, torch.cumsum, T.cumsum,
           F.interpolate, torch.lerp, T.lerp, torch.addcmul, T.addcmul, torch.addcdiv, T.addcdiv,
           torch.abs, T.abs, T.__abs__, torch.erf, T.erf, torch.sin, torch.cos, T.sin, T.cos}
_LAYER_NORM = inspect.signature(F.layer_norm)
_RMS_NORM = inspect.signature(F.rms_norm)
_PRODUCT_SUM = inspect.signature(lambda input, a=None, b=None, *, beta=1, alpha=1, mat1=None, mat2=None,
                                  batch1=None, batch2=None: None)
_LINEAR = inspect.signature(lambda input, weight, bias=None: None)
_SDPA = inspect.signature(lambda query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                          scale=None, enable_gqa=False: None)


def _live(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _name(func: Any) -> str:
    owner = getattr(func, "__objclass__", None)
    prefix = "Tensor." if owner is torch.Tensor else ("torch." if func in vars(torch).values() else "")
    return prefix + getattr(func, "__name__", repr(func))


class RelevanceMode(AttentionRecorder):
    """Inside ``with RelevanceMode(rules):`` a forward computes the transformer
    operations through LRP rules in gradient form (``rules.attention``: ``"attnlrp"`` or
    ``"cp_lrp"``; :mod:`attribkit.torch.lrp.transformer_rules`)."""

    def __init__(self, rules: Rules) -> None:
        super().__init__(record=False)
        self.rules = rules
        self.epsilon = rules.linear.epsilon
        self.stabilizer = rules.stabilizer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not torch.is_grad_enabled():
            return func(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._attention_module(func, args, kwargs)
        tensors = list(args[1] if func is torch.einsum and len(args) == 2 and isinstance(
            args[1], (list, tuple)) else args) + list(kwargs.values())
        if not any(_live(t) for t in tensors):
            return func(*args, **kwargs)
        if func is F.scaled_dot_product_attention:
            return self._fused_attention(args, kwargs)
        return self._rule(func, args, kwargs)

    def _attention_module(self, func: Any, args: tuple, kwargs: dict) -> Any:
        given = _MHA_SIGNATURE.bind(*args, **kwargs).arguments
        unusual = [n for n in ("bias_k", "bias_v", "static_k", "static_v") if given.get(n) is not None]
        if given.get("add_zero_attn") or unusual:
            raise LRPRuleError("LRP has no rule for nn.MultiheadAttention with "
                               f"{', '.join(unusual) or 'add_zero_attn'}")
        with self:  # explicit attention: its products and softmax come back here
            return self._mha(func, args, kwargs)

    def _fused_attention(self, args: tuple, kwargs: dict) -> torch.Tensor:
        """The fused attention, with the gradients of ``q``, ``k``, ``v`` (and a live
        additive mask) scaled by the shares of the uniform rule on ``q kᵀ`` and ``A v``;
        CP-LRP: ``A`` constant (``q``, ``k`` cut)."""
        a = _SDPA.bind(*args, **kwargs).arguments
        q, k, v = a["query"], a["key"], a["value"]
        if self.rules.attention == "cp_lrp":
            q, k = q.detach(), k.detach()
        attention_live = _live(q) or _live(k) or _live(a.get("attn_mask"))
        av = 0.5 if attention_live and _live(v) else 1.0
        qk = av * (0.5 if _live(q) and _live(k) else 1.0)
        a["query"], a["key"], a["value"] = scaled(q, qk), scaled(k, qk), scaled(v, av)
        if _live(a.get("attn_mask")):
            a["attn_mask"] = scaled(a["attn_mask"], av)
        return F.scaled_dot_product_attention(**a)

    def _rule(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if func in MUL:
            return self._product(args[0], args[1], torch.mul)
        if func is T.__rmatmul__:
            return self._product(args[1], args[0], torch.matmul)
        if func in MATMUL:
            return self._product(args[0], args[1], torch.matmul if func not in (torch.bmm, T.bmm)
                                 else torch.bmm)
        if func is torch.einsum:
            operands = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
            if len(operands) == 2:
                return self._product(*operands, lambda a, b: torch.einsum(args[0], a, b))
        if func in PRODUCT_SUMS:
            a = _PRODUCT_SUM.bind(*args, **kwargs).arguments
            first, second = (next(a[n] for n in names if n in a) for names in
                             (("a", "mat1", "batch1"), ("b", "mat2", "batch2")))
            share = 0.5 if _live(first) and _live(second) else 1.0
            return func(a["input"], scaled(first, share), scaled(second, share), beta=a.get("beta", 1),
                        alpha=a.get("alpha", 1))
        if func in SOFTMAX and self.rules.attention == "cp_lrp":
            return func(args[0].detach(), *args[1:], **kwargs)  # CP-LRP: constant probabilities
        if func is F.layer_norm:
            a = _LAYER_NORM.bind(*args, **kwargs).arguments
            return layer_norm(a["input"], a["normalized_shape"], a.get("weight"), a.get("bias"),
                              a.get("eps", 1e-5))
        if func is F.rms_norm:
            a = _RMS_NORM.bind(*args, **kwargs).arguments
            return rms_norm(a["input"], lambda x: func(x, *args[1:], **kwargs), a["normalized_shape"],
                            a.get("weight"), a.get("eps"))
        if func is F.linear and not _live(args[1] if len(args) > 1 else kwargs.get("weight")):
            a = _LINEAR.bind(*args, **kwargs).arguments
            return affine(a["input"], FunctionalLinear(a["weight"], a.get("bias")), self.epsilon)
        if func in PASS and _live(args[0]):
            options = {k: v for k, v in kwargs.items() if k != "inplace"}
            exact = exact_of(func, options.get("approximate", args[1] if len(args) > 1 else "none"))
            return identity(args[0], lambda t: func(t, *args[1:], **options), self.stabilizer, exact)
        if func in NO_RULE or (func in DIV and (kwargs.get("rounding_mode") or _live(args[1]))) \
                or func is F.linear or func is torch.einsum:
            raise LRPRuleError(
                f"LRP has no rule for {_name(func)} on values that depend on the input (a "
                "normalisation or activation written by hand, or an in-place update?); the "
                "transformer composites cover attention, LayerNorm/RMSNorm, sums, products, "
                "softmax and elementwise activations")
        # sums, scales, negation, means, reshapes, copies: the gradient is the rule
        return INPLACE.get(func, func)(*args, **kwargs)

    def _product(self, a: Any, b: Any, fn: Callable) -> torch.Tensor:
        if fn is torch.mul and self.rules.attention == "cp_lrp" and _live(a) and _live(b) \
                and is_activated(a) != is_activated(b):  # CP-LRP: the activated factor is a constant gate
            a, b = (a.detach(), b) if is_activated(a) else (a, b.detach())
        z = fn(a, b)
        return scaled(z, 0.5) if _live(a) and _live(b) else z  # the uniform rule


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
