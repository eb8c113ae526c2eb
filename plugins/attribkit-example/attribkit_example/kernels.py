"""Kernels of the example plugin, written against attribkit's public torch API."""

from __future__ import annotations

import torch

from attribkit.errors import InvalidOptionError
from attribkit.torch import torch_kernel


@torch_kernel(autograd=False)
def activation_map(model, inputs, target, layer, *, reduce: str) -> torch.Tensor:
    """``A = reduce_k A^k``: the chosen layer's activations reduced over channels
    (``mean`` or ``max``), shape ``(B, 1, h, w)``."""
    if reduce not in ("mean", "max"):
        raise InvalidOptionError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    captured = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            scores = model(inputs)
    finally:
        handle.remove()
    if not target.is_callable:
        target.indices_for(scores)  # record which class was predicted, for the result
    acts = captured[-1]
    return acts.mean(1, keepdim=True) if reduce == "mean" else acts.amax(1, keepdim=True)
