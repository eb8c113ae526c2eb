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
from attribkit.progress import labelled
from attribkit.result import Attribution
from attribkit.torch.checks import prepare_inputs
from attribkit.torch.guard import model_guard
from attribkit.torch.targets import ChunkTarget, parse_target


def as_batch(inputs: Any, *, image: bool, model: Any = None) -> torch.Tensor:
    """``inputs`` (torch tensor or NumPy array) as a floating tensor, checked
    (:func:`~attribkit.torch.checks.prepare_inputs`; for an ``nn.Module`` ``model``
    also against what it reads, and in its dtype)."""
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"inputs must be a torch.Tensor or np.ndarray batch, got {type(inputs).__name__}")
    return prepare_inputs(model, inputs, image=image)


def forward_kernel(kernel: Callable | None = None, *, image: bool = True,
                   thread_safe: bool = True) -> Callable:
    """Decorate ``kernel(predict, inputs, target, **options) -> (B, ...) values``.

    The kernel gets a :class:`~attribkit.predict.Predict` (torch tensors in,
    scores out, chunked by the user's ``batch_size``), the whole ``(B, ...)``
    batch as a tensor and a :class:`~attribkit.torch.targets.ChunkTarget` whose
    classes the decorator has resolved from one forward of the unperturbed batch
    (``target.clean_scores`` holds its ``(B,)`` target scores); the kernel calls
    ``target.select_rows`` on perturbed copies (or uses :func:`masked_scores`).
    The wrapper accepts any model :func:`~attribkit.predict.as_predict` does,
    NumPy inputs (the values come back as NumPy), guards PyTorch modules (eval
    mode for the call, everything restored) and builds the result.

    ``thread_safe`` (the default: a kernel that only calls ``predict`` touches
    nothing on the model) lets calls on one module from several threads run at
    once; see :func:`~attribkit.torch.guard.model_guard`.
    """
    if kernel is None:
        return functools.partial(forward_kernel, image=image, thread_safe=thread_safe)

    @functools.wraps(kernel)
    def run(model: Any, inputs: Any, *, method: str, target: Any = None, layer: Any = None,
            batch_size: int | None = None, options: dict[str, Any] | None = None) -> Attribution:
        options = dict(options or {})
        as_numpy = isinstance(inputs, np.ndarray)
        predict = as_predict(model, batch_size=batch_size)
        x = as_batch(inputs, image=image, model=predict.module)
        chosen = ChunkTarget(parse_target(target, len(x)))
        guard = (model_guard(predict.module, exclusive=not thread_safe) if predict.module is not None
                 else contextlib.nullcontext())
        with guard, torch.no_grad(), labelled(method):
            chosen.clean_scores = chosen.select(predict(x))
            values = kernel(predict, x, chosen, **options)
        indices = None if chosen.is_callable or chosen.indices is None else chosen.indices.cpu()
        return Attribution(
            values=values.cpu().numpy() if as_numpy else values,
            method=method,
            target=indices,
            layer=None,
            input_size=tuple(x.shape[-2:]) if x.ndim == 4 else None,
            meta={"options": options, "batch_size": batch_size, "backend": predict.backend,
                  **({"target_fn": target} if chosen.is_callable else {}),
                  **({} if chosen.top is None else {"predictions": tuple(t.cpu() for t in chosen.top)})},
        )

    run.kernel = kernel
    return run
