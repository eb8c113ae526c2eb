"""LRP rules for the operations of a transformer (AttnLRP, CP-LRP).

Each rule is an autograd function whose forward is the operation itself and whose
backward sends the relevance ``R`` at its output to its inputs (as the rules of
:mod:`attribkit.torch.lrp.rules`); ``stab(z) = z + eps·sign(z)``. An operand is
*live* when it depends on the explained input (it requires grad: the parameters are
frozen for the call); constants (parameters, masks, numbers) get no relevance.

=============================  ==================================================
softmax (AttnLRP)              ``R_in = x ⊙ (R − s · Σ R)``: first-order Taylor
                               expansion at the input ``x``, ``s`` the output
                               (Achtibat et al. 2024, Proposition 3.1)
products ``a·b``, ``A @ B``    epsilon rule of the product, split equally between
                               two live operands (the uniform rule); a single
                               live operand gets all of it (a constant factor is a
                               weight, a scale passes relevance on)
sums ``a ± b``                 epsilon rule: ``R_a = a ⊙ R / stab(a ± b)``
LayerNorm / RMSNorm            the normalising ``σ`` treated as a constant, then the
                               epsilon rule of the linear map that is left
                               (centring, scaling, affine; the bias absorbs its share)
=============================  ==================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from attribkit.torch.lrp.rules import Affine, ratio

Tensor = torch.Tensor


def _unbroadcast(r: Tensor, shape: torch.Size) -> Tensor:
    """``r`` summed down to ``shape`` (the operand's, before broadcasting)."""
    return r if r.shape == shape else r.sum_to_size(shape)


class FunctionalLinear(Affine):
    """``F.linear(x, weight, bias)`` called without a module (``nn.MultiheadAttention``'s
    projections), as an :class:`~attribkit.torch.lrp.rules.Affine` for the linear rules."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:  # noqa: D107 - no module
        self.module = None
        self.weight, self.bias = weight, bias
        self.is_linear = True


class SumRule(torch.autograd.Function):
    """``z = a + alpha·b`` (``alpha = -1``: a difference); the epsilon rule of a sum,
    ``R_a = a ⊙ R / stab(z)``, ``R_b = alpha·b ⊙ R / stab(z)``, each summed back to its
    operand's shape (a broadcast position embedding, a bias)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, alpha: float, stabilizer: float) -> Tensor:
        z = torch.add(a, b, alpha=alpha)
        ctx.save_for_backward(a, b, z)
        ctx.alpha, ctx.stabilizer = alpha, stabilizer
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b, z = ctx.saved_tensors
        s = ratio(grad, z, ctx.stabilizer)
        r_a = _unbroadcast(a * s, a.shape) if ctx.needs_input_grad[0] else None
        if ctx.needs_input_grad[1]:
            s = s.mul_(b) if s.shape == b.shape and r_a is None else s * b
            r_b = _unbroadcast(s if ctx.alpha == 1 else s.mul_(ctx.alpha), b.shape)
        else:
            r_b = None
        return r_a, r_b, None, None


class ProductRule(torch.autograd.Function):
    """``z = fn(a, b)``, a product linear in each operand (``a * b``, ``a @ b``,
    ``bmm``, a two-operand ``einsum``): ``R_a = w · a ⊙ ∂z/∂aᵀ (R / stab(z))``, the
    same for ``b``, with ``w = 1/2`` when both are live (the uniform rule of AttnLRP,
    Proposition 3.3) and ``w = 1`` for the only live one (the epsilon rule, the other
    factor acting as a weight). For an elementwise product this is ``R/2`` each, or
    ``R`` passed on."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, fn: Callable[[Tensor, Tensor], Tensor],
                stabilizer: float) -> Tensor:
        z = fn(a, b)
        ctx.save_for_backward(a, b, z)
        ctx.fn, ctx.stabilizer = fn, stabilizer
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b, z = ctx.saved_tensors
        live = ctx.needs_input_grad[:2]
        share = 0.5 if all(live) else 1.0
        s = ratio(grad, z, ctx.stabilizer)
        if ctx.fn in (torch.matmul, torch.bmm) and a.ndim >= 2 and b.ndim >= 2:
            if share != 1.0:
                s.mul_(share)
            r_a = _unbroadcast(s @ b.transpose(-2, -1), a.shape).mul_(a) if live[0] else None
            r_b = _unbroadcast(a.transpose(-2, -1) @ s, b.shape).mul_(b) if live[1] else None
            return r_a, r_b, None, None
        if ctx.fn is torch.mul:  # a ⊙ (b ⊙ s) = z ⊙ s, summed back to each operand
            r = s.mul_(z).mul_(share)
            r_a = _unbroadcast(r, a.shape) if live[0] else None
            r_b = _unbroadcast(r if r_a is None or r_a is not r else r.clone(), b.shape) if live[1] else None
            return r_a, r_b, None, None
        with torch.enable_grad():
            aa = a.detach().requires_grad_(live[0])
            bb = b.detach().requires_grad_(live[1])
            leaves = [t for t, on in zip((aa, bb), live) if on]
            grads = iter(torch.autograd.grad(ctx.fn(aa, bb), leaves, s))
        out = [t * next(grads) * share if on else None for t, on in zip((a, b), live)]
        return out[0], out[1], None, None


class ScaleRule(torch.autograd.Function):
    """``z = fn(x)`` linear and elementwise in ``x`` (a product or quotient with a
    constant, a scale): the epsilon rule without bias, ``R_in = R`` summed back to
    ``x``'s shape."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        ctx.shape = x.shape
        return fn(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _unbroadcast(grad, ctx.shape), None


class SoftmaxRule(torch.autograd.Function):
    """``s = softmax(x)`` along ``dim`` with the AttnLRP rule
    ``R_in = x ⊙ (R − s · Σ_dim R)``; masked positions (``x = −inf``, ``s = 0``) get
    none."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor], dim: int) -> Tensor:
        s = fn(x)
        ctx.save_for_backward(x, s)
        ctx.dim = dim
        return s

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, s = ctx.saved_tensors
        r = torch.addcmul(grad, s, grad.sum(dim=ctx.dim, keepdim=True), value=-1).mul_(x)
        return r.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0), None, None


class NormalizationRule(torch.autograd.Function):
    """LayerNorm (``centre=True``) or RMSNorm over the last ``dims`` dimensions:
    ``y = c(x)/σ ⊙ w + b`` with ``σ`` (the standard deviation, or root mean square,
    plus ``eps``) a constant: ``R_x = x ⊙ Jᵀ (R / stab(y))``, ``J`` the Jacobian of
    the linear map ``x ↦ c(x)/σ ⊙ w`` (``c`` the centring, or the identity)."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor], weight: Tensor | None,
                dims: int, eps: float, centre: bool, stabilizer: float) -> Tensor:
        y = fn(x)
        axes = tuple(range(-dims, 0))
        spread = x.var(dim=axes, keepdim=True, unbiased=False) if centre else \
            x.pow(2).mean(dim=axes, keepdim=True)
        ctx.save_for_backward(x, y, (spread + eps).sqrt(), weight)
        ctx.axes, ctx.centre, ctx.stabilizer = axes, centre, stabilizer
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, sigma, weight = ctx.saved_tensors
        t = ratio(grad, y, ctx.stabilizer).div_(sigma)
        if weight is not None:
            t = t.mul_(weight)
        if ctx.centre:
            t = t - t.mean(dim=ctx.axes, keepdim=True)
        return x * t, None, None, None, None, None, None


def normalization(x: Tensor, fn: Callable[[Tensor], Tensor], shape: Sequence[int],
                  weight: Tensor | None, eps: float | None, *, centre: bool,
                  stabilizer: float) -> Tensor:
    """``fn(x)`` (a layer or RMS norm over the trailing ``shape``) through
    :class:`NormalizationRule`; ``eps=None`` is ``F.rms_norm``'s default (the dtype's
    machine epsilon)."""
    dims = 1 if isinstance(shape, int) else len(shape)
    if eps is None:
        eps = torch.finfo(x.dtype).eps
    return NormalizationRule.apply(x, fn, weight, dims, eps, centre, stabilizer)
