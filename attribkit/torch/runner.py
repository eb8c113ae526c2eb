"""Turn a per-chunk kernel into a method implementation.

A kernel is a plain function ``kernel(model, inputs, target, [layer,] **options)
-> values`` that explains one chunk of the batch. :func:`torch_kernel` wraps it
with everything every method needs, written once: input checks
(:mod:`attribkit.torch.checks`), autograd-mode checks, the model guard, layer
resolution, chunking by ``batch_size``, the target's class indices (resolved
from the first forward the kernel runs on the chunk, see
:class:`~attribkit.torch.targets.ChunkTarget`) and the
:class:`~attribkit.result.Attribution` result.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from attribkit.errors import InvalidOptionError
from attribkit.result import Attribution
from attribkit.torch.capture import forward_hook
from attribkit.torch.checks import check_grad_mode, input_shape_noted, prepare_inputs
from attribkit.torch.guard import model_guard
from attribkit.torch.layers import resolve_layer
from attribkit.torch.targets import ChunkTarget, chunk, parse_target


def chunks(batch: int, batch_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of at most ``batch_size`` rows."""
    if batch_size is None:
        return [(0, batch)]
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidOptionError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return [(i, min(i + batch_size, batch)) for i in range(0, batch, batch_size)]


def run_chunk(kernel: Callable, model: Any, inputs: torch.Tensor, target: ChunkTarget,
              **kwargs: Any) -> torch.Tensor:
    """``kernel(model, inputs, target, **kwargs)``, with the target's classes resolved
    from the first forward of ``model`` on ``inputs`` (observed by a thread-keyed hook
    on the root module), or by one extra forward if the kernel never ran one."""
    def observe(_module: nn.Module, args: tuple, output: Any) -> None:
        if args:
            target.observe(args[0], output, inputs)

    with forward_hook(model, observe) if isinstance(model, nn.Module) else contextlib.nullcontext():
        values = kernel(model, inputs, target, **kwargs)
    if not target.resolved:
        with torch.no_grad():
            target.indices_for(model(inputs))
    return values.detach()


def torch_kernel(kernel: Callable | None = None, *, image: bool = False,
                 autograd: bool = True, thread_safe: bool = False) -> Callable:
    """Decorate a per-chunk kernel; the kernel takes a ``layer`` argument iff it needs one.

    ``image=True`` requires ``(B, C, H, W)`` inputs (always true for layer kernels);
    ``autograd=False`` marks forward-only kernels, which also run under
    ``torch.inference_mode``. ``thread_safe=True`` declares that the kernel only
    looks inside the model through :mod:`attribkit.torch.capture` and changes
    nothing on it, so calls on one model from several threads may run at once;
    otherwise they take turns (see :func:`~attribkit.torch.guard.model_guard`).
    """
    if kernel is None:
        return functools.partial(torch_kernel, image=image, autograd=autograd,
                                 thread_safe=thread_safe)
    needs_layer = "layer" in inspect.signature(kernel).parameters

    @functools.wraps(kernel)
    def run(model: Any, inputs: torch.Tensor, *, method: str, target: Any = None,
            layer: nn.Module | str | None = None, batch_size: int | None = None,
            options: dict[str, Any] | None = None) -> Attribution:
        options = dict(options or {})
        inputs = prepare_inputs(model, inputs, image=image or needs_layer)
        if autograd:
            check_grad_mode(inputs)
        parsed = parse_target(target, len(inputs))
        ranges = chunks(len(inputs), batch_size)
        with model_guard(model, exclusive=not thread_safe), torch.enable_grad(), \
                input_shape_noted(inputs):
            extra: dict[str, Any] = {}
            name = None
            if needs_layer:
                extra["layer"], name = resolve_layer(model, layer, inputs,
                                                     chunk(parsed, 0, min(2, len(inputs))))
            values, indices, tops = [], [], []
            for start, stop in ranges:
                chunk_target = chunk(parsed, start, stop)
                values.append(run_chunk(kernel, model, inputs[start:stop], chunk_target,
                                        **extra, **options))
                indices.append(chunk_target.indices)
                tops.append(chunk_target.top)
        return Attribution(
            values=torch.cat(values) if len(values) > 1 else values[0],
            method=method,
            target=None if any(i is None for i in indices) else torch.cat(indices).cpu(),
            layer=name,
            input_size=tuple(inputs.shape[-2:]) if inputs.ndim == 4 else None,
            meta={"options": options, "batch_size": batch_size,
                  **({"target_fn": target} if callable(parsed) else {}),
                  **({} if any(t is None for t in tops) else {"predictions": (
                      torch.cat([t[0] for t in tops]).cpu(), torch.cat([t[1] for t in tops]).cpu())})},
        )

    run.kernel = kernel
    run.thread_safe = thread_safe
    return run
