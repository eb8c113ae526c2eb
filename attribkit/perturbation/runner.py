"""Turn a forward-only kernel into a method implementation for any model kind."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from attribkit.errors import InputError
from attribkit.predict import as_predict
from attribkit.result import Attribution
from attribkit.torch.guard import model_guard
from attribkit.torch.runner import check_batch
from attribkit.torch.targets import ChunkTarget, parse_target


def as_batch(inputs: Any, *, image: bool) -> torch.Tensor:
    """``inputs`` (torch tensor or NumPy array) as a floating tensor, checked."""
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"inputs must be a torch.Tensor or np.ndarray batch, got {type(inputs).__name__}")
    check_batch(inputs, image=image)
    return inputs


def forward_kernel(kernel: Callable | None = None, *, image: bool = True) -> Callable:
    """Decorate ``kernel(predict, inputs, target, **options) -> (B, ...) values``.

    The kernel gets a :class:`~attribkit.predict.Predict` (torch tensors in,
    scores out, chunked by the user's ``batch_size``), the whole ``(B, ...)``
    batch as a tensor and a :class:`~attribkit.torch.targets.ChunkTarget`; it
    calls ``target.indices_for(predict(inputs))`` to fix the classes, then
    ``target.select_rows`` on perturbed copies (or uses :func:`masked_scores`).
    The wrapper accepts any model :func:`~attribkit.predict.as_predict` does,
    NumPy inputs (the values come back as NumPy), guards PyTorch modules (eval
    mode for the call, everything restored) and builds the result.
    """
    if kernel is None:
        return functools.partial(forward_kernel, image=image)

    @functools.wraps(kernel)
    def run(model: Any, inputs: Any, *, method: str, target: Any = None, layer: Any = None,
            batch_size: int | None = None, options: dict[str, Any] | None = None) -> Attribution:
        options = dict(options or {})
        as_numpy = isinstance(inputs, np.ndarray)
        x = as_batch(inputs, image=image)
        predict = as_predict(model, batch_size=batch_size)
        chosen = ChunkTarget(parse_target(target, len(x)))
        guard = model_guard(predict.module) if predict.module is not None else contextlib.nullcontext()
        with guard, torch.no_grad():
            values = kernel(predict, x, chosen, **options)
        indices = None if chosen.is_callable or chosen.indices is None else chosen.indices.cpu()
        return Attribution(
            values=values.cpu().numpy() if as_numpy else values,
            method=method,
            target=indices,
            layer=None,
            input_size=tuple(x.shape[-2:]) if x.ndim == 4 else None,
            meta={"options": options, "batch_size": batch_size, "backend": predict.backend,
                  **({"target_fn": target} if chosen.is_callable else {})},
        )

    run.kernel = kernel
    return run
