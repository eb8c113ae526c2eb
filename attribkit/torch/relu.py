"""The ReLU override used by guided backpropagation and deconvnet.

Module hooks (Captum's approach) only see ``nn.ReLU`` modules and miss
functional calls such as torchvision DenseNet's final ``F.relu``. Here one
mechanism covers both: a :class:`~torch.overrides.TorchFunctionMode` routes
every ReLU call made during the forward (``nn.ReLU`` in place or not, reused
modules, ``F.relu``, ``torch.relu``, ``Tensor.relu``, ``relu_``) through an
autograd function whose forward is the ordinary ReLU and whose backward
applies the chosen rule:

- ``guided`` (Springenberg et al. 2015): ``g_in = relu(g_out) * [x > 0]``
- ``deconvnet`` (Zeiler & Fergus 2014): ``g_in = relu(g_out)``
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

RULES = ("guided", "deconvnet")

_OUT_OF_PLACE = {torch.relu, torch.Tensor.relu, F.relu}
_IN_PLACE = {torch.relu_, torch.Tensor.relu_}


class _RuleReLU(torch.autograd.Function):
    """``relu(x)`` forward; the rule's gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rule: str, inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = x.relu_()
        else:
            out = x.relu()
        ctx.rule = rule
        if rule == "guided":
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.rule == "guided":
            (out,) = ctx.saved_tensors
            # ReLU's own backward (grad where out > 0), then negative signals stopped
            return torch.ops.aten.threshold_backward(grad, out, 0).clamp_(min=0), None, None
        return grad.clamp(min=0), None, None


class ReLURule(TorchFunctionMode):
    """Inside ``with ReLURule("guided"):`` every ReLU backpropagates by the rule."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"unknown ReLU rule {rule!r}; expected one of {RULES}")
        self.rule = rule

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            inplace = func in _IN_PLACE or bool(kwargs.get("inplace", False))
            x = args[0]
            if x.requires_grad and torch.is_grad_enabled():
                return _RuleReLU.apply(x, self.rule, inplace)
        return func(*args, **kwargs)
