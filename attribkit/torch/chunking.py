"""How many rows at a time a method that multiplies the batch runs.

Integrated gradients (``n_steps`` copies of each image), the noise tunnel
(``n_samples``), Score-CAM (one masked copy per channel), occlusion and RISE
(one per window or mask) run many more rows than the user's batch. Run at once,
integrated gradients on 4 ResNet-50 images at 224 px is 200 rows of forward and
backward: 16 GiB. These methods instead run chunks of rows sized from the input:

* :class:`ActivationMeter` watches a forward (one the method runs anyway where
  there is one) with hooks on the model's leaf modules and estimates what one
  row costs: with autograd, what a backward keeps (every leaf's output, an
  in-place or view output once, plus the input's gradient); without, what is
  alive at once (twice the largest leaf's input and output, plus the input row);
* :func:`rows_per_chunk` divides the memory budget by that: at least the rows the
  method needs in one call (e.g. one step of every image).

The budget is :data:`DEFAULT_BUDGET` (1 GiB), or the environment variable
``ATTRIBKIT_MEMORY_BUDGET`` (``"512MiB"``, ``"2GB"``, a number of bytes). A method's
own option (``internal_batch_size``, ``forward_batch_size``, ``batch_size``) wins
over the estimate. Results do not depend on the chunking (up to float rounding).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import torch
from torch import nn

from attribkit.errors import InvalidOptionError
from attribkit.torch.capture import forward_hook, forward_hooks

#: Bytes of activations a chunk of rows may take when no option says otherwise.
DEFAULT_BUDGET = 2**30
ENV = "ATTRIBKIT_MEMORY_BUDGET"
#: Bytes per row of a model that cannot be watched (an ONNX session, a callable),
#: as a multiple of the input row's bytes (a forward-only ResNet-50 is about 25).
OPAQUE_FACTOR = 32

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
          "tib": 2**40}


def parse_size(text: str) -> int:
    """``"512MiB"`` / ``"2GB"`` / ``"1e9"`` as bytes (``InvalidOptionError`` otherwise)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*", str(text).lower())
    if match is None or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
        raise InvalidOptionError(
            f"{ENV} must be a positive size such as 512MiB, 2GB or a number of bytes, got {text!r}")
    return max(1, int(float(match.group(1)) * _UNITS[match.group(2)]))


def memory_budget() -> int:
    """Bytes a chunk may take: ``ATTRIBKIT_MEMORY_BUDGET`` if set, else :data:`DEFAULT_BUDGET`."""
    text = os.environ.get(ENV, "").strip()
    return parse_size(text) if text else DEFAULT_BUDGET


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class ActivationMeter:
    """Watches the forwards of ``model`` run inside ``with meter:`` (this thread only).

    After them, :meth:`row_bytes` estimates the memory one input row takes. A
    model that is not an ``nn.Module`` cannot be watched: the estimate is then
    :data:`OPAQUE_FACTOR` times the input row.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.rows = 0
        self.input_row = 0
        self.kept = 0       # bytes of leaf outputs (what autograd keeps for a backward)
        self.largest = 0    # bytes of the largest leaf input + output (alive at once without it)
        self._stack = contextlib.ExitStack()

    def _root(self, _module: nn.Module, args: tuple) -> None:
        first = _tensors(args[:1])
        if first and not self.rows:
            self.rows = max(1, len(first[0]))
            self.input_row = _nbytes(first[0]) // self.rows

    def _leaf(self, _module: nn.Module, args: tuple, output: Any) -> None:
        inputs = _tensors(args[:1])
        in_bytes = _nbytes(inputs[0]) if inputs else 0
        pointers = {t.data_ptr() for t in inputs}
        for out in _tensors(output):
            fresh = out.data_ptr() not in pointers  # an in-place op or a view adds nothing
            size = _nbytes(out) if fresh else 0
            self.kept += size
            self.largest = max(self.largest, size + in_bytes)

    def __enter__(self) -> "ActivationMeter":
        if isinstance(self.model, nn.Module):
            leaves = [m for m in self.model.modules() if next(m.children(), None) is None]
            self._stack.enter_context(forward_hook(self.model, self._root, pre=True))
            self._stack.enter_context(forward_hooks([(m, self._leaf) for m in leaves]))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def row_bytes(self, inputs: torch.Tensor, *, grad: bool) -> int:
        """Estimated bytes per row of ``inputs`` (the watched forwards' rows, if any)."""
        input_row = self.input_row or _nbytes(inputs) // max(1, len(inputs))
        if not self.rows:  # nothing was watched
            return max(1, OPAQUE_FACTOR * input_row)
        per_row = self.kept if grad else 2 * self.largest
        return max(1, per_row // self.rows + input_row)


def measure(model: Any, inputs: torch.Tensor, *, grad: bool) -> int:
    """Bytes per row of ``model`` on ``inputs``, from one forward of its first row
    without gradients (an opaque model is not called)."""
    meter = ActivationMeter(model)
    if isinstance(model, nn.Module):
        with meter, torch.no_grad():
            model(inputs[:1])
    return meter.row_bytes(inputs, grad=grad)


def measure_row(module: nn.Module, call: Any, row: torch.Tensor, *, grad: bool) -> int:
    """Bytes per row of ``module`` while ``call()`` runs it, without gradients, on one
    row whose input is ``row`` (for models called with keywords, such as a language
    model given token ids, a mask and embeddings)."""
    meter = ActivationMeter(module)
    with meter, torch.no_grad():
        call()
    meter.rows, meter.input_row = 1, _nbytes(row)
    return meter.row_bytes(row, grad=grad)


def rows_per_chunk(row_bytes: int, *, least: int = 1, budget: int | None = None,
                   total: int | None = None) -> int:
    """How many rows of ``row_bytes`` fit the budget (:func:`memory_budget` by
    default), and never fewer than ``least``. With ``total`` rows to run, the
    chunks are evened out (100 rows at 46 a chunk: 34, 34, 32, not 46, 46, 8)."""
    budget = memory_budget() if budget is None else budget
    step = max(int(least), budget // max(1, int(row_bytes)))
    if total is not None and 0 < total:
        step = max(int(least), -(-total // -(-total // step)))
    return step
