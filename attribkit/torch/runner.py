"""Turn a per-chunk kernel into a method implementation.

A kernel is a plain function ``kernel(model, inputs, target, [layer,] **options)
-> values`` that explains one chunk of the batch. :func:`torch_kernel` wraps it
with everything every method needs, written once: input checks, autograd-mode
checks, the model guard, layer resolution, chunking by ``batch_size`` and the
:class:`~attribkit.result.Attribution` result.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attribkit.errors import GradientModeError, InputError, InvalidOptionError
from attribkit.result import Attribution
from attribkit.torch.guard import model_guard
from attribkit.torch.layers import resolve_layer
from attribkit.torch.targets import chunk, parse_target


def check_inputs(model: Any, inputs: Any, *, image: bool) -> None:
    """Reject inputs that cannot be explained, naming the problem."""
    if not isinstance(inputs, torch.Tensor):
        raise InputError(
            f"inputs must be a torch.Tensor batch, got {type(inputs).__name__}; convert with "
            "torch.as_tensor(...)"
        )
    check_batch(inputs, image=image)
    if isinstance(model, nn.Module):
        param = next(model.parameters(), None)
        if param is not None and param.device != inputs.device:
            raise InputError(
                f"inputs are on {inputs.device} but the model's parameters are on {param.device}; "
                "move one of them"
            )


def check_batch(inputs: torch.Tensor, *, image: bool) -> None:
    """A floating-point, non-empty ``(B, ...)`` batch; ``(B, C, H, W)`` if ``image``."""
    if not inputs.is_floating_point():
        raise InputError(f"inputs must be a floating-point tensor, got {inputs.dtype}")
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise InputError(f"inputs must be a non-empty batch (B, ...), got shape {tuple(inputs.shape)}")
    if image and inputs.ndim != 4:
        extra = "; add a batch dimension with x.unsqueeze(0)" if inputs.ndim == 3 else ""
        raise InputError(f"this method needs images (B, C, H, W), got shape {tuple(inputs.shape)}{extra}")


def check_grad_mode(inputs: torch.Tensor) -> None:
    """Gradients are impossible under ``torch.inference_mode``: say so clearly."""
    if torch.is_inference_mode_enabled() or inputs.is_inference():
        raise GradientModeError(
            "attribution needs autograd, which torch.inference_mode() disables (and tensors made "
            "under it cannot be differentiated); call explain outside inference_mode. "
            "torch.no_grad() is fine: attribkit re-enables gradients itself"
        )


def chunks(batch: int, batch_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``batch_size`` rows."""
    if batch_size is None:
        return [(0, batch)]
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidOptionError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return [(i, min(i + batch_size, batch)) for i in range(0, batch, batch_size)]


def torch_kernel(kernel: Callable | None = None, *, image: bool = False,
                 autograd: bool = True) -> Callable:
    """Decorate a per-chunk kernel; the kernel takes a ``layer`` argument iff it needs one.

    ``image=True`` requires ``(B, C, H, W)`` inputs (always true for layer kernels);
    ``autograd=False`` marks forward-only kernels, which also run under
    ``torch.inference_mode``.
    """
    if kernel is None:
        return functools.partial(torch_kernel, image=image, autograd=autograd)
    needs_layer = "layer" in inspect.signature(kernel).parameters

    @functools.wraps(kernel)
    def run(model: Any, inputs: torch.Tensor, *, method: str, target: Any = None,
            layer: nn.Module | str | None = None, batch_size: int | None = None,
            options: dict[str, Any] | None = None) -> Attribution:
        options = dict(options or {})
        check_inputs(model, inputs, image=image or needs_layer)
        if autograd:
            check_grad_mode(inputs)
        parsed = parse_target(target, len(inputs))
        ranges = chunks(len(inputs), batch_size)
        with model_guard(model), torch.enable_grad():
            extra: dict[str, Any] = {}
            name = None
            if needs_layer:
                extra["layer"], name = resolve_layer(model, layer, inputs)
            values, indices = [], []
            for start, stop in ranges:
                chunk_target = chunk(parsed, start, stop)
                values.append(kernel(model, inputs[start:stop], chunk_target, **extra, **options).detach())
                indices.append(chunk_target.indices)
        return Attribution(
            values=torch.cat(values) if len(values) > 1 else values[0],
            method=method,
            target=None if any(i is None for i in indices) else torch.cat(indices).cpu(),
            layer=name,
            input_size=tuple(inputs.shape[-2:]) if inputs.ndim == 4 else None,
            meta={"options": options, "batch_size": batch_size,
                  **({"target_fn": target} if callable(parsed) else {})},
        )

    run.kernel = kernel
    return run
