"""Kernels of the example plugin, written against attribkit's public torch API."""

from __future__ import annotations

import torch

from attribkit.errors import InvalidOptionError
from attribkit.torch import LayerCapture, torch_kernel


@torch_kernel(autograd=False, thread_safe=True)
def activation_map(model, inputs, target, layer, *, reduce: str) -> torch.Tensor:
    """``A = reduce_k A^k``: the chosen layer's activations reduced over channels
    (``mean`` or ``max``), shape ``(B, 1, h, w)``.

    The layer's output is recorded with :class:`attribkit.torch.LayerCapture`, whose
    hooks belong to this call only, so the kernel is ``thread_safe``; the class each
    image is explained for (reported in ``result.target``) is resolved by the
    decorator from this forward."""
    if reduce not in ("mean", "max"):
        raise InvalidOptionError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    with LayerCapture(layer) as capture, torch.no_grad():
        capture.run(model, inputs)
    acts = capture.output
    return acts.mean(1, keepdim=True) if reduce == "mean" else acts.amax(1, keepdim=True)
