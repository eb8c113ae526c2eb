"""LRP rules for transformers (AttnLRP, CP-LRP), in gradient form.

The transformer composites carry, instead of the relevance ``R_t`` of a tensor ``t``,
its *relevance per unit* ``G_t`` with ``R_t = t ⊙ G_t`` (the form LXT uses, Achtibat et
al. 2024, Section 3.3). The backward starts from ``G = 1`` at the explained score (``R``
= the score) and the relevance of the input is ``x ⊙ G_x``. In this form the rules are
the ordinary gradient wherever they are linear in the relevance and need no division:

=============================  ==================================================
linear layers (LRP-epsilon)    ``G_x = Wᵀ (G_z ⊙ z / stab_ε(z))``, the plain gradient
                               when ``ε = 0`` (LRP-0); a bias absorbs its share
sums ``a ± b``, scales,        the gradient: ``R_a = a ⊙ R / (a + b)`` is ``G_a =
negation, means, pooling       G_z``; ``R_in = R_out`` through ``c · x`` is ``G_x = c G_z``
products ``a·b``, ``A @ B``    the gradient, halved when both operands depend on
                               the input (the uniform rule, Proposition 3.3); a
                               single live operand takes all (the other is a weight)
softmax (AttnLRP)              the gradient: ``x ⊙ Jᵀ(s ⊙ G)`` is the Taylor rule
                               ``R_in = x ⊙ (R − s · Σ R)`` (Proposition 3.1)
LayerNorm / RMSNorm            the gradient with ``σ`` constant
elementwise activations        the identity rule ``R_x = R_y``: ``G_x = G_y ⊙ y / x``
                               (exact for GELU, SiLU, ReLU; else ``y / stab(x)``)
=============================  ==================================================

So ``scaled_dot_product_attention`` stays fused: the AttnLRP rules of ``softmax(q kᵀ) v``
only halve the gradients of ``q kᵀ`` and ``A v``, which is ``(¼, ¼, ½)`` times the fused
kernel's gradients of ``(q, k, v)``. ``stab(x) = x + stabilizer·sign(x)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from attribkit.torch.lrp.rules import Affine, stabilize

Tensor = torch.Tensor


class FunctionalLinear(Affine):
    """``F.linear(x, weight, bias)`` called without a module (``nn.MultiheadAttention``'s
    projections), as an :class:`~attribkit.torch.lrp.rules.Affine` for the linear rule."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:  # noqa: D107 - no module
        self.module = None
        self.weight, self.bias = weight, bias
        self.is_linear = True


class EpsilonGradient(torch.autograd.Function):
    """An affine layer ``z = f(x; W, b)`` with LRP-epsilon in gradient form:
    ``G_x = Wᵀ (G_z ⊙ |z| / (|z| + ε))`` (``z / stab_ε(z)``), ``Wᵀ G_z`` for ``ε = 0``."""

    @staticmethod
    def forward(ctx, x: Tensor, layer: Affine, epsilon: float) -> Tensor:
        z = layer.forward(x, layer.weight, layer.bias)
        ctx.save_for_backward(x, z if epsilon else None)
        ctx.layer, ctx.epsilon = layer, epsilon
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, z = ctx.saved_tensors
        if ctx.epsilon:  # G - ε G / (|z| + ε), written over |z| + ε (one new buffer)
            d = z.abs().add_(ctx.epsilon)
            grad = torch.addcdiv(grad, grad, d, value=-ctx.epsilon, out=d)
        return ctx.layer.transpose(grad, ctx.layer.weight, x), None, None


def affine(x: Tensor, layer: Affine, epsilon: float) -> Tensor:
    """``f(x)`` of an affine layer with the epsilon rule in gradient form."""
    return EpsilonGradient.apply(x, layer, epsilon)


class GradientScale(torch.autograd.Function):
    """The identity forward; the gradient times ``factor`` backward."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.factor, None


def scaled(x: Tensor, factor: float) -> Tensor:
    """``x``, whose gradient is multiplied by ``factor`` (``x`` itself for 1)."""
    return x if factor == 1 else GradientScale.apply(x, factor)


class IdentityRule(torch.autograd.Function):
    """``y = fn(x)`` elementwise with the identity rule ``R_x = R_y``:
    ``G_x = G_y ⊙ y / x``, computed by ``exact(G_y, x, y)`` where ``y / x`` is known at
    ``x = 0`` too (GELU, SiLU: ½; ReLU: 0), else as ``y / stab(x)``; with
    ``stabilizer = 0``, 0 where ``x = 0`` (there ``R_x = x ⊙ G_x`` is 0 whatever ``G_x``,
    and the epsilon rule sends nothing on)."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor], stabilizer: float,
                exact: Callable[[Tensor, Tensor, Tensor], Tensor] | None) -> Tensor:
        y = fn(x)
        ctx.save_for_backward(x, y)
        ctx.stabilizer, ctx.exact = stabilizer, exact
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y = ctx.saved_tensors
        if ctx.exact is not None:
            return ctx.exact(grad, x, y), None, None, None
        d = stabilize(x, ctx.stabilizer)
        ratio = torch.div(y, d, out=d)
        if not ctx.stabilizer:
            ratio = ratio.masked_fill_(x == 0, 0.0)
        return ratio.mul_(grad), None, None, None


def _halved_at_zero(grad: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``grad ⊙ y / x`` with ``y / x = ½`` at ``x = 0`` (GELU's ``Φ(0)``, SiLU's ``σ(0)``)."""
    return torch.div(y, x).nan_to_num_(nan=0.5).mul_(grad)


def _sigmoid(grad: Tensor, x: Tensor, y: Tensor) -> Tensor:
    return torch.sigmoid(x).mul_(grad)


def _step(grad: Tensor, x: Tensor, y: Tensor) -> Tensor:
    return torch.ops.aten.threshold_backward(grad, x, 0)


#: ``grad ⊙ fn(x) / x``, exact at ``x = 0`` too, of the activations for which it is cheap
EXACT: dict[Callable, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    F.gelu: _halved_at_zero, F.silu: _sigmoid, F.relu: _step, torch.relu: _step, Tensor.relu: _step}
_MODULES = {torch.nn.GELU: F.gelu, torch.nn.SiLU: F.silu, torch.nn.ReLU: F.relu}
#: transformers' activation modules computing exactly these (``transformers.activations``)
_MODULE_NAMES = {"GELUActivation": F.gelu, "SiLUActivation": F.silu}


def exact_of(activation: Callable | torch.nn.Module, approximate: str = "none",
             ) -> Callable[[Tensor, Tensor, Tensor], Tensor] | None:
    """The identity rule's ``(grad, x, y) -> grad ⊙ y / x`` of an activation function or
    module that has a cheap exact one (GELU, SiLU, ReLU), or ``None``."""
    if isinstance(activation, torch.nn.Module):
        approximate = getattr(activation, "approximate", "none")
        activation = _MODULES.get(type(activation), _MODULE_NAMES.get(type(activation).__name__))
    if activation is F.gelu and approximate != "none":
        return None
    return EXACT.get(activation)


def identity(x: Tensor, fn: Callable[[Tensor], Tensor], stabilizer: float,
             exact: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """``fn(x)`` (an elementwise activation) through :class:`IdentityRule`."""
    return IdentityRule.apply(x, fn, stabilizer, exact)


def is_activated(t: Tensor) -> bool:
    """Whether ``t`` is an elementwise activation's output (the gate of ``silu(x₁) ⊙ x₂``)."""
    return getattr(t.grad_fn, "_forward_cls", None) is IdentityRule


class NormalizationRule(torch.autograd.Function):
    """LayerNorm (``centre=True``) or RMSNorm over the last ``dims`` dimensions,
    ``y = c(x) · r ⊙ w + b`` with ``r = 1/σ`` (the reciprocal standard deviation, or
    root mean square, with ``eps``) held constant: ``G_x = c(r · w ⊙ G_y)``, ``c`` the
    centring (``t − mean(t)``) or the identity. ``r`` comes from the forward (LayerNorm's
    fused kernel returns it)."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], tuple[Tensor, Tensor]], weight: Tensor | None,
                dims: int, centre: bool) -> Tensor:
        y, rstd = fn(x)
        ctx.save_for_backward(rstd, weight)
        ctx.dims, ctx.centre = dims, centre
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        rstd, weight = ctx.saved_tensors
        t = grad * rstd if weight is None else (grad * weight).mul_(rstd)
        if ctx.centre:
            t = t.sub_(t.mean(dim=tuple(range(-ctx.dims, 0)), keepdim=True))
        return t, None, None, None, None


def layer_norm(x: Tensor, shape: Sequence[int], weight: Tensor | None, bias: Tensor | None,
               eps: float) -> Tensor:
    """``F.layer_norm(x, shape, weight, bias, eps)`` with ``σ`` constant for the relevance."""
    shape = [shape] if isinstance(shape, int) else list(shape)

    def fn(t: Tensor) -> tuple[Tensor, Tensor]:
        y, _, rstd = torch.ops.aten.native_layer_norm(t, shape, weight, bias, eps)
        return y, rstd.to(t.dtype).view(*t.shape[:t.ndim - len(shape)], *[1] * len(shape))
    return NormalizationRule.apply(x, fn, weight, len(shape), True)


def rms_norm(x: Tensor, fn: Callable[[Tensor], Tensor], shape: Sequence[int], weight: Tensor | None,
             eps: float | None) -> Tensor:
    """``fn(x)``, an RMS normalisation over the trailing ``shape`` with scale ``weight``, with
    ``σ`` constant; ``eps=None`` is ``F.rms_norm``'s default (the dtype's machine epsilon)."""
    dims = 1 if isinstance(shape, int) else len(shape)
    eps = torch.finfo(x.dtype).eps if eps is None else eps

    def forward(t: Tensor) -> tuple[Tensor, Tensor]:
        axes = tuple(range(-dims, 0))
        return fn(t), t.pow(2).mean(dim=axes, keepdim=True).add_(eps).rsqrt_()
    return NormalizationRule.apply(x, forward, weight, dims, False)
