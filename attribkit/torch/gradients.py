"""Gradient-family kernels.

Each kernel explains one chunk; :func:`~attribkit.torch.runner.torch_kernel`
adds checks, the model guard, chunking and the result type.
"""

from __future__ import annotations

import torch

from attribkit.errors import InvalidOptionError
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


def input_gradient(model: torch.nn.Module, inputs: torch.Tensor, target: ChunkTarget) -> torch.Tensor:
    """``d target_score / d inputs`` for each image, with no ``.grad`` left on parameters."""
    x = inputs.detach().requires_grad_(True)
    score = target.select(model(x))
    (grad,) = torch.autograd.grad(score.sum(), x)
    return grad


@torch_kernel
def saliency(model, inputs, target, *, abs: bool, take_max: bool) -> torch.Tensor:
    """Vanilla gradient ``dS_t/dx`` (Simonyan, Vedaldi & Zisserman 2014,
    "Deep Inside Convolutional Networks", arXiv:1312.6034)."""
    return reduce_channels(input_gradient(model, inputs, target), abs=abs, take_max=take_max)
