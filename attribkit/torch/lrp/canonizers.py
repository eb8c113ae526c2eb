"""Canonizers: rewrite a model, for the call only, into a form the LRP rules apply to.

- **BatchNorm merging** (Zennit's ``SequentialMergeBatchNorm``): a BatchNorm that
  directly follows a convolution or linear layer (in module order, the leaves
  visited depth-first) is folded into it, ``W' = W * g / sqrt(var + eps)`` per
  output channel and ``b' = (b - mean) * g / sqrt(var + eps) + beta``; the
  BatchNorm then normalises with zero mean, unit variance, unit weight and zero bias
  (a scaling by ``(1 + eps)^-1/2``, as Zennit leaves it) and passes relevance on. That
  scaling is folded into the merged parameters too, so the BatchNorm becomes the
  identity (one elementwise pass less per layer; the result is the same up to
  rounding, since every rule is invariant to scaling a layer's weights and bias
  together, up to the stabilizer). Nothing of the model is written: the merged
  parameters are new tensors used by the overridden forwards of the call, so the
  model's weights stay bit-identical.
- **Residual additions** of torchvision ResNet ``BasicBlock`` and ``Bottleneck``
  (Zennit's ``ResNetCanonizer``): the block's ``out += identity`` becomes an explicit
  sum with the epsilon rule ``R_i = x_i R / stab(x_1 + x_2)``.
- **VGG** with BatchNorm (Zennit's ``VGGCanonizer``): BatchNorm merging.

:func:`merge_batchnorms` finds the merges; :func:`residual_blocks` the blocks; with
``canonize=True`` (the default) both apply to every model, which covers torchvision
ResNets and VGGs and any ``conv -> BatchNorm`` sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn


AFFINE_TYPES: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORM_TYPES: tuple[type, ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def leaves(module: nn.Module) -> Iterator[nn.Module]:
    """The leaf modules in order: children depth-first, as registered."""
    children = list(module.children())
    if not children:
        yield module
    for child in children:
        yield from leaves(child)


def _mergeable(bn: nn.Module) -> bool:
    return bn.running_mean is not None and bn.running_var is not None


@torch.no_grad()
def merge_batchnorms(model: nn.Module) -> tuple[dict[nn.Module, tuple[torch.Tensor, torch.Tensor]],
                                                list[nn.Module]]:
    """``({layer: (W', b')}, [merged BatchNorms])`` for every BatchNorm right after an
    affine leaf (``W' = W * s``, ``b' = (b - mean) * s + beta``, ``s = g / sqrt(var + eps)``,
    both times ``(1 + eps)^-1/2``, what the BatchNorm left with zero mean and unit
    variance computes). Transposed convolutions are not merged into (they have no LRP
    rule here)."""
    merged: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
    bns: list[nn.Module] = []
    last = None
    for leaf in leaves(model):
        if (isinstance(last, AFFINE_TYPES) and isinstance(leaf, BATCHNORM_TYPES)
                and _mergeable(leaf) and last not in merged):
            merged[last] = _merge(last, leaf)
            bns.append(leaf)
        last = leaf
    return merged, bns


def _merge(layer: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    weight = layer.weight.detach()
    scale = (bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)) \
        / (bn.running_var + bn.eps) ** 0.5
    shift = bn.bias.detach() if bn.bias is not None else torch.zeros_like(bn.running_mean)
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros(1, dtype=weight.dtype,
                                                                          device=weight.device)
    index = (slice(None), *((None,) * (weight.ndim - 1)))
    left = (1 + bn.eps) ** -0.5  # the merged BatchNorm's own scaling, as Zennit leaves it
    return (weight * scale[index]) * left, ((bias - bn.running_mean) * scale + shift) * left


def merged_batchnorm_forward(x: torch.Tensor) -> torch.Tensor:
    """The forward of a BatchNorm merged into the layer before it: the identity."""
    return x


def _torchvision_blocks() -> tuple[type, type] | None:
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:  # pragma: no cover - torchvision is installed with the torch extra
        return None
    return BasicBlock, Bottleneck


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The torchvision ResNet ``BasicBlock`` / ``Bottleneck`` modules of ``model``."""
    types = _torchvision_blocks()
    return [] if types is None else [m for m in model.modules() if isinstance(m, types)]


def residual_block_forward(block: nn.Module, add: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                           ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The block's forward with the residual addition computed by ``add(identity, out)``
    out of place (:class:`~attribkit.torch.lrp.rules.ResidualSum`, the epsilon rule of a
    sum; ``torch.add`` in gradient form); otherwise torchvision's ``BasicBlock`` /
    ``Bottleneck``."""
    basic = type(block).__name__ == "BasicBlock" or not hasattr(block, "conv3")

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        if not basic:
            out = block.bn3(block.conv3(block.relu(out)))
        identity = x if block.downsample is None else block.downsample(x)
        return block.relu(add(identity, out))

    return forward
