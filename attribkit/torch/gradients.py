"""Gradient-family kernels.

Each kernel explains one chunk; :func:`~attribkit.torch.runner.torch_kernel`
adds checks, the model guard, chunking and the result type. All gradients
are taken with ``torch.autograd.grad`` with respect to the input only, so
nothing accumulates on parameters and weight gradients are never computed.
"""

from __future__ import annotations

import contextlib

import torch

from attribkit.errors import InvalidOptionError
from attribkit.torch.relu import ReLURule
from attribkit.torch.runner import torch_kernel
from attribkit.torch.targets import ChunkTarget


def reduce_channels(maps: torch.Tensor, *, abs: bool, take_max: bool) -> torch.Tensor:
    """Optional ``|m|``, then optional max over the channel axis (FlashTorch's
    ``take_max``; with ``abs`` it is Simonyan et al.'s ``max_c |dS/dx_c|``)."""
    if abs:
        maps = maps.abs()
    if take_max:
        if maps.ndim != 4:
            raise InvalidOptionError(f"take_max needs (B, C, H, W) inputs, got shape {tuple(maps.shape)}")
        maps = maps.amax(dim=1, keepdim=True)
    return maps


def input_gradient(model: torch.nn.Module, inputs: torch.Tensor, target: ChunkTarget,
                   relu_rule: str | None = None) -> torch.Tensor:
    """``d target_score / d inputs`` per image; with ``relu_rule`` every ReLU of the
    forward (module or functional) backpropagates by that rule (see :mod:`attribkit.torch.relu`)."""
    x = inputs.detach().requires_grad_(True)
    with ReLURule(relu_rule) if relu_rule else contextlib.nullcontext():
        score = target.select(model(x))
    (grad,) = torch.autograd.grad(score.sum(), x)
    return grad


def guided_gradient(model: torch.nn.Module, inputs: torch.Tensor, target: ChunkTarget) -> torch.Tensor:
    """Guided backpropagation gradient (Springenberg et al. 2015), for reuse by Guided Grad-CAM."""
    return input_gradient(model, inputs, target, "guided")


@torch_kernel
def saliency(model, inputs, target, *, abs: bool, take_max: bool) -> torch.Tensor:
    """Vanilla gradient ``dS_t/dx`` (Simonyan, Vedaldi & Zisserman 2014,
    "Deep Inside Convolutional Networks", arXiv:1312.6034)."""
    return reduce_channels(input_gradient(model, inputs, target), abs=abs, take_max=take_max)


@torch_kernel
def guided_backprop(model, inputs, target, *, abs: bool, take_max: bool) -> torch.Tensor:
    """Guided backpropagation: at every ReLU ``g_in = relu(g_out) * [x > 0]``
    (Springenberg et al. 2015, "Striving for Simplicity", arXiv:1412.6806)."""
    grad = input_gradient(model, inputs, target, "guided")
    return reduce_channels(grad, abs=abs, take_max=take_max)


@torch_kernel
def deconvnet(model, inputs, target, *, abs: bool, take_max: bool) -> torch.Tensor:
    """Deconvnet: at every ReLU ``g_in = relu(g_out)``, ignoring the forward sign
    (Zeiler & Fergus 2014, "Visualizing and Understanding CNNs", arXiv:1311.2901)."""
    grad = input_gradient(model, inputs, target, "deconvnet")
    return reduce_channels(grad, abs=abs, take_max=take_max)


@torch_kernel
def input_x_gradient(model, inputs, target, *, abs: bool, take_max: bool) -> torch.Tensor:
    """Input times gradient ``x * dS_t/dx`` (Shrikumar et al. 2016, arXiv:1605.01713)."""
    grad = input_gradient(model, inputs, target)
    return reduce_channels(inputs.detach() * grad, abs=abs, take_max=take_max)
