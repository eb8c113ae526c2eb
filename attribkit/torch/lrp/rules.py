"""LRP rules: how the relevance ``R_out`` at a layer's output is sent to its input.

Every rule for an affine layer ``z = f(x; W, b)`` (``nn.Linear``, ``nn.Conv1d/2d/3d``)
has the form (Bach et al. 2015; Montavon et al. 2019, "Layer-Wise Relevance
Propagation: An Overview")

    s   = R_out / stab(z')                       (z' the rule's modified forward)
    R_in = x' * (W'^T s)                          (W'^T s: the gradient of f at W')

with ``stab(z) = z + eps * sign(z)`` (``sign(0) = 1``). The rules differ only in the
modified inputs ``x'``, weights ``W'`` and biases ``b'``:

=============  ==============================================================
epsilon        ``z' = z``; ``eps`` absorbs weak or contradictory relevance
z+             ``z' = f(x+; W+, b+) + f(x-; W-)``: positive contributions only
alpha-beta     ``alpha * R+ - beta * R-`` with ``alpha - beta = 1``
gamma          ``W' = W + gamma W+`` for ``z > 0`` (``W + gamma W-`` for ``z < 0``)
flat           ``x' = 1``, ``W' = 1``, no bias: relevance spread uniformly
zB (box)       ``z' = f(x; W, b) - f(l; W+, b+) - f(h; W-, b-)`` for ``l <= x <= h``
=============  ==============================================================

(``x+ = max(x, 0)``, ``x- = min(x, 0)``, the same for ``W`` and ``b``.) The
definitions are those of Zennit (Anders et al. 2021, arXiv:2106.13200), including
its generalisations of z+ and gamma to negative inputs, so the results agree.

Non-affine layers: ``norm`` (average pooling, residual sums) is the epsilon rule
of a parameter-free linear map, ``pass`` (activations, BatchNorm after merging)
hands ``R_out`` on unchanged.

A rule is applied by :class:`AffineRule`, an autograd function: its forward is the
layer's ordinary forward (no graph is built for it), its backward the rule. So one
forward and one backward of the whole network compute LRP for a batch. Terms whose
input is identically zero (``x-`` after a ReLU) are skipped: they contribute exactly
zero.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def stabilize(z: Tensor, eps: float) -> Tensor:
    """``z + eps * sign(z)`` with ``sign(0) = +1``: a denominator that is never zero.

    Computed as ``z + copysign(eps, z)`` (two passes instead of four), which differs only
    at ``z = -0.0``, where every contribution to ``z`` is zero and so is every relevance
    sent through it, whatever the sign of the denominator."""
    return torch.copysign(torch.tensor(eps, dtype=z.dtype, device=z.device), z).add_(z)


def ratio(grad: Tensor, z: Tensor, eps: float) -> Tensor:
    """``grad / stab(z)``, divided into the stabilised copy of ``z`` (one new buffer)."""
    d = stabilize(z, eps)
    return torch.div(grad, d, out=d) if grad.shape == d.shape and grad.dtype == d.dtype else grad / d


def _pos(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(max=0)


class Affine:
    """An affine layer ``f(x; W, b)`` with its effective parameters for the call (after
    canonization): ``forward(x, W, b)`` and ``transpose(s, W, x) = (df/dx)^T s``."""

    def __init__(self, module: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
        self.module = module
        self.weight = weight
        self.bias = bias
        self.is_linear = isinstance(module, nn.Linear)
        if not self.is_linear:
            self._direct = module.padding_mode == "zeros" and not isinstance(module.padding, str)
            self._dims = module.weight.ndim - 2

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """``f(x; weight, bias)``."""
        if self.is_linear:
            return F.linear(x, weight, bias)
        return self.module._conv_forward(x, weight, bias)

    def transpose(self, s: Tensor, weight: Tensor, x: Tensor) -> Tensor:
        """``W^T s``: the gradient of ``f(.; weight)`` at ``x`` for the output gradient ``s``."""
        if self.is_linear:
            return s @ weight
        if self._direct:
            m = self.module
            return torch.ops.aten.convolution_backward(
                s, x, weight, None, m.stride, m.padding, m.dilation, False, [0] * self._dims,
                m.groups, [True, False, False])[0]
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.forward(xx, weight, None), xx, s)
        return grad


# --------------------------------------------------------------------- affine rules

class Rule:
    """An LRP rule for an affine layer: ``relevance(layer, x, z, R_out) -> R_in``
    (``z`` the layer's output, ``None`` unless ``uses_output``)."""

    name = "rule"
    uses_output = False

    def relevance(self, layer: Affine, x: Tensor, z: Tensor, grad: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Epsilon(Rule):
    """LRP-epsilon (Bach et al. 2015): ``R_in = x * W^T (R_out / stab_eps(z))``;
    ``epsilon = 0`` is LRP-0 (then ``sum R_in = sum R_out`` without biases)."""

    name = "epsilon"
    uses_output = True

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = float(epsilon)

    def relevance(self, layer, x, z, grad):
        s = ratio(grad, z, self.epsilon)
        return layer.transpose(s, layer.weight, x).mul_(x)


def _split(x: Tensor) -> tuple[Tensor, Tensor, bool, bool]:
    """``x+, x-`` and whether each can be nonzero (after a ReLU, ``x- = 0``: no copies)."""
    if bool(x.min() >= 0):
        return x, torch.zeros((), dtype=x.dtype, device=x.device), True, False
    return x.clamp(min=0), x.clamp(max=0), bool((x > 0).any()), True


class ZPlus(Rule):
    """LRP-z+ (Montavon et al. 2017, Deep Taylor Decomposition, for x >= 0), as
    alpha=1, beta=0 for any sign: ``z' = f(x+; W+, b+) + f(x-; W-)``,
    ``R_in = x+ * W+^T s + x- * W-^T s`` with ``s = R_out / stab(z')``."""

    name = "zplus"

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)

    def relevance(self, layer, x, z, grad):
        xp, xn, _, has_neg = _split(x)
        wp, wn = _pos(layer.weight), _neg(layer.weight)
        zz = layer.forward(xp, wp, _pos(layer.bias))
        if not has_neg:  # x >= 0 (after a ReLU): zz >= 0, stab(zz) = zz + eps; in place
            s = torch.div(grad, zz.add_(self.stabilizer), out=zz)
            return layer.transpose(s, wp, x).mul_(x)
        zz = zz + layer.forward(xn, wn, None)
        s = ratio(grad, zz, self.stabilizer)
        return xp * layer.transpose(s, wp, x) + xn * layer.transpose(s, wn, x)


class AlphaBeta(Rule):
    """LRP-alpha-beta (Bach et al. 2015): ``R_in = alpha R+ - beta R-`` where ``R+`` is the
    z+ relevance of the positive contributions ``x+W+ + x-W- (+b+)`` and ``R-`` that of the
    negative ones ``x+W- + x-W+ (+b-)``; ``alpha - beta = 1`` conserves relevance."""

    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        if alpha < 0 or beta < 0 or alpha - beta != 1:
            raise ValueError(f"alpha-beta needs alpha, beta >= 0 and alpha - beta = 1, got "
                             f"alpha={alpha!r}, beta={beta!r}")
        self.alpha, self.beta, self.stabilizer = float(alpha), float(beta), float(stabilizer)

    def relevance(self, layer, x, z, grad):
        xp, xn, _, has_neg = _split(x)
        wp, wn = _pos(layer.weight), _neg(layer.weight)
        z_pos = layer.forward(xp, wp, _pos(layer.bias))
        z_neg = layer.forward(xp, wn, _neg(layer.bias))
        if has_neg:
            z_pos = z_pos + layer.forward(xn, wn, None)
            z_neg = z_neg + layer.forward(xn, wp, None)
        s_pos = ratio(grad, z_pos, self.stabilizer)
        s_neg = ratio(grad, z_neg, self.stabilizer)
        r_pos = xp * layer.transpose(s_pos, wp, x)
        r_neg = xp * layer.transpose(s_neg, wn, x)
        if has_neg:
            r_pos = r_pos + xn * layer.transpose(s_pos, wn, x)
            r_neg = r_neg + xn * layer.transpose(s_neg, wp, x)
        return self.alpha * r_pos - self.beta * r_neg


class Gamma(Rule):
    """LRP-gamma (Montavon et al. 2019), generalised to inputs of any sign (Andéol et al.
    2021): for outputs ``z > 0`` the weights ``W + gamma W+`` (biases alike) on ``x+`` and
    ``W + gamma W-`` on ``x-``; for ``z < 0`` the other way round; ``gamma -> 0`` is LRP-0,
    ``gamma -> inf`` is z+."""

    name = "gamma"
    uses_output = True

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        self.gamma, self.stabilizer = float(gamma), float(stabilizer)

    def relevance(self, layer, x, z, grad):
        g = self.gamma
        w, b = layer.weight, layer.bias
        w_up, w_down = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        b_up = None if b is None else b + g * b.clamp(min=0)
        b_down = None if b is None else b + g * b.clamp(max=0)
        xp, xn, _, has_neg = _split(x)
        z_pos = layer.forward(xp, w_up, b_up)
        z_neg = layer.forward(xp, w_down, b_down)
        if has_neg:
            z_pos = z_pos + layer.forward(xn, w_down, None)
            z_neg = z_neg + layer.forward(xn, w_up, None)
        s_pos = (z > 0) * grad / stabilize(z_pos, self.stabilizer)
        s_neg = (z < 0) * grad / stabilize(z_neg, self.stabilizer)
        out = xp * layer.transpose(s_pos, w_up, x)
        if has_neg:
            out = out + xn * layer.transpose(s_pos, w_down, x)
        out = out + xp * layer.transpose(s_neg, w_down, x)
        if has_neg:
            out = out + xn * layer.transpose(s_neg, w_up, x)
        return out


class Flat(Rule):
    """LRP-flat (Lapuschkin et al. 2019, Unmasking Clever Hans Predictors): ``x' = 1``,
    ``W' = 1``, no bias, ``R_in = 1^T (R_out / stab(f(1; 1)))``: each output's relevance
    spread evenly over its receptive field, independent of the input values."""

    name = "flat"

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)

    def relevance(self, layer, x, z, grad):
        w = layer.weight
        if not layer.is_linear and layer.module.groups == 1:
            # f(1; 1) is the same for every image and output channel, and 1^T s only needs
            # s summed over the output channels: one output channel does it
            ones = torch.ones((1, *w.shape[1:]), dtype=w.dtype, device=w.device)
            zz = layer.forward(torch.ones_like(x[:1]), ones, None)
            s = (ratio(grad, zz, self.stabilizer)).sum(dim=1, keepdim=True)
            return layer.transpose(s, ones, x)
        ones = torch.ones_like(w)
        zz = layer.forward(torch.ones_like(x), ones, None)
        s = ratio(grad, zz, self.stabilizer)
        return layer.transpose(s, ones, x)


def _bound(value: Any, x: Tensor) -> Tensor:
    """A bound of the zB rule as a tensor broadcast to ``x``: a number, one number per
    channel (a sequence or a 1-D tensor), a tensor broadcastable to ``x``, or ``None``
    (then ``low``/``high`` are each image's own minimum / maximum)."""
    if isinstance(value, torch.Tensor):
        t = value.to(device=x.device, dtype=x.dtype)
    else:
        t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if t.ndim == 1 and x.ndim > 2 and len(t) == x.shape[1]:
        t = t.reshape(1, -1, *([1] * (x.ndim - 2)))
    return t.expand_as(x)


class ZBox(Rule):
    """LRP-zB (Montavon et al. 2017, Deep Taylor Decomposition) for inputs bounded by
    ``low <= x <= high``: ``z' = f(x; W, b) - f(l; W+, b+) - f(h; W-, b-)`` and
    ``R_in = x W^T s - l W+^T s - h W-^T s``. Meant for the first layer (pixels)."""

    name = "zbox"
    uses_output = True

    def __init__(self, low: Any = None, high: Any = None, stabilizer: float = 1e-6) -> None:
        self.low, self.high, self.stabilizer = low, high, float(stabilizer)

    def relevance(self, layer, x, z, grad):
        dims = tuple(range(1, x.ndim))
        low = x.amin(dim=dims, keepdim=True).expand_as(x) if self.low is None else _bound(self.low, x)
        high = x.amax(dim=dims, keepdim=True).expand_as(x) if self.high is None else _bound(self.high, x)
        w, b = layer.weight, layer.bias
        wp, wn = _pos(w), _neg(w)
        zz = z - (layer.forward(low, wp, _pos(b)) + layer.forward(high, wn, _neg(b)))
        s = ratio(grad, zz, self.stabilizer)
        return x * layer.transpose(s, w, x) - (low * layer.transpose(s, wp, x)
                                               + high * layer.transpose(s, wn, x))


# --------------------------------------------------------------------- autograd functions

class AffineRule(torch.autograd.Function):
    """``f(x; W, b)`` forward (no graph for ``f``); the rule's relevance backward."""

    @staticmethod
    def forward(ctx, x: Tensor, layer: Affine, rule: Rule) -> Tensor:
        z = layer.forward(x, layer.weight, layer.bias)
        if rule.uses_output:
            ctx.save_for_backward(x, z)
        else:
            ctx.save_for_backward(x)
        ctx.layer, ctx.rule = layer, rule
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, *z = ctx.saved_tensors
        return ctx.rule.relevance(ctx.layer, x, z[0] if z else None, grad), None, None


class NormRule(torch.autograd.Function):
    """A parameter-free linear map ``z = f(x)`` (average pooling) with the epsilon rule:
    ``R_in = x * f^T (R_out / stab(z))`` (Zennit's ``Norm``)."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor], stabilizer: float) -> Tensor:
        z = fn(x)
        ctx.save_for_backward(x, z)
        ctx.fn, ctx.stabilizer = fn, stabilizer
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, z = ctx.saved_tensors
        s = ratio(grad, z, ctx.stabilizer)
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (c,) = torch.autograd.grad(ctx.fn(xx), xx, s)
        return x * c, None, None


class ResidualSum(torch.autograd.Function):
    """``a + b`` (a residual addition) with the epsilon rule of a sum:
    ``R_a = a * R / stab(a + b)``, ``R_b = b * R / stab(a + b)``."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, stabilizer: float) -> Tensor:
        z = a + b
        ctx.save_for_backward(a, b, z)
        ctx.stabilizer = stabilizer
        return z

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, b, z = ctx.saved_tensors
        s = ratio(grad, z, ctx.stabilizer)
        return a * s, s.mul_(b), None


class PassRule(torch.autograd.Function):
    """``fn(x)`` forward; the relevance passed on unchanged backward (activations:
    Zennit's ``Pass``)."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        return fn(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


@dataclasses.dataclass(frozen=True)
class Rules:
    """The rules of a composite: for convolutions, for ``nn.Linear`` and for the first
    layer (``first_types``: which layer types count as "first"), the stabilizer of
    the parameter-free layers, and ``attention``: ``None`` for a CNN composite, else
    the transformer variant (``"attnlrp"``, ``"cp_lrp"``) whose functional operations
    :mod:`attribkit.torch.lrp.transformer_mode` routes through rules."""

    conv: Rule
    linear: Rule
    first: Rule | None = None
    first_types: tuple[type, ...] = ()
    stabilizer: float = 1e-6
    attention: str | None = None
