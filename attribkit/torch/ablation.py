"""Ablation-CAM (Desai & Ramaswamy 2020), without recomputing the model before the layer.

Ablation-CAM needs the target score with each of the ``C`` channels ablated,
for each image. After one forward on the real inputs (activations and scores)
it runs, **one image at a time**, forwards whose input is that image alone
(batch 1) and in which the layer's hook replaces the ``(1, C, h, w)`` output by
``K <= forward_batch_size`` rows: the un-ablated activations (a check row) and
up to ``K - 1`` ablated copies. So only the part of the model after the layer
runs on ``K`` rows, ``ceil(C / (forward_batch_size - 1))`` forwards per image.
The first forward of an image also records the output of each module call that
ends before the layer's call begins (the outermost ones, of modules called once
per forward); the image's later forwards **replay** them: those modules and the
layer itself return a copy of the recorded output instead of running (a
``forward`` attribute set on the module instance, deleted in ``finally``), so
the part before the layer, and the layer, run once per image, on that image.
For ``layer4`` of a ResNet the whole call then costs the first forward, one
batch-1 forward per image and the head on ``B * (C + chunks)`` rows: a few
plain forwards, whatever ``forward_batch_size``.

Code after the layer that combines its output with a tensor computed before it
(a residual ``out += identity`` when the layer is inside a block) sees a
batch-1 tensor, which broadcasts over the ``K`` rows exactly as if each row had
its own copy. Where that cannot hold, the **rule** is: an expanded forward is
trusted only if it runs without raising (a ``torch.cat`` of the layer output
with a batch-1 tensor, as in DenseNet, raises), calls the layer as often as the
first forward did with the replacement at the last call, returns a ``(K, ...)``
tensor, and its check row reproduces the image's original target score ``S``
to within ``sqrt(eps)`` times the larger of ``|S|`` and the image's largest
``|output|`` (``eps`` of the score dtype; TF32's ``2**-10`` for float32 on CUDA
when TF32 is allowed); the check rows of an image are compared once, after its
last forward. An image whose replayed forwards fail is done again without
replay, and replay is off for the rest of the call; an image whose forwards
without replay fail sends the whole call to the **full path**: ``B * C`` forwards of the
whole model in batches of ``forward_batch_size`` rows (rows of all images
together), the layer's output replaced at its last call. The full path also
serves ``forward_batch_size=1`` (no room for a check row); a layer called more
than once per forward is expanded at its last call but never replayed. Both
paths give the same numbers up to rounding.
Everything stays on the inputs' device, without NumPy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from attribkit.errors import LayerError
from attribkit.progress import progress
from attribkit.torch.cam import _check_batch_size, _describe, layer_activations, spatial_output, weighted_map
from attribkit.torch.capture import LayerCapture, forward_hooks
from attribkit.torch.runner import torch_kernel
from attribkit.torch.targets import ChunkTarget


class _Untrusted(Exception):
    """An expanded forward cannot be trusted (see the module docstring); the call
    falls back to full forwards."""


class _Substitute:
    """The ``replace`` of a :class:`LayerCapture`: at the layer's call number ``call``
    its output becomes ``rows``. With ``expand`` the output replaced is a batch-1
    ``(1, C, h, w)`` and ``rows`` holds ``K`` rows of that shape."""

    def __init__(self, layer: nn.Module, call: int, *, expand: bool) -> None:
        self.layer, self.call, self.expand = layer, call, expand
        self.rows: torch.Tensor | None = None
        self.replaced = False

    def __call__(self, output: torch.Tensor, call: int) -> torch.Tensor | None:
        if call != self.call:
            return None
        expected = (1, *self.rows.shape[1:]) if self.expand else tuple(self.rows.shape)
        if tuple(output.shape) != expected:
            if self.expand:
                raise _Untrusted("unexpected layer output shape")
            raise LayerError(f"layer {_describe(self.layer)} returned shape {tuple(output.shape)}, "
                             f"expected {expected}")
        self.replaced = True
        return self.rows


def _substituted_forward(model: nn.Module, inputs: torch.Tensor, layer: nn.Module,
                         substitute: _Substitute, rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """One no-grad forward with the layer's output replaced by ``rows``: ``(outputs, calls)``."""
    substitute.rows, substitute.replaced = rows, False
    with LayerCapture(layer, _describe(layer), check=spatial_output(layer),
                      replace=substitute) as capture, torch.no_grad():
        outputs = capture.run(model, inputs)
    return outputs, capture.calls


def _check_tolerance(dtype: torch.dtype, device: torch.device) -> float:
    """Relative tolerance of the expanded path's check rows: ``sqrt(eps)`` of the score
    dtype, TF32's ``eps = 2**-10`` for float32 on CUDA when TF32 is allowed."""
    eps = torch.finfo(dtype if dtype.is_floating_point else torch.float32).eps
    if device.type == "cuda" and dtype == torch.float32 and (
            torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32):
        eps = max(eps, 2.0 ** -10)
    return eps ** 0.5


def _ablated_copies(acts: torch.Tensor, image: int, first: int, stop: int,
                    value: float) -> torch.Tensor:
    """``stop - first + 1`` copies of image ``image``'s activations: row 0 as they are
    (the check row), row ``r >= 1`` with channel ``first + r - 1`` set to ``value``."""
    rows = acts[image:image + 1].repeat(stop - first + 1, 1, 1, 1)
    index = torch.arange(1, stop - first + 1, device=acts.device)
    rows[index, index + first - 1] = value
    return rows


def _recorded(output: torch.Tensor, *_args: Any, **_kwargs: Any) -> torch.Tensor:
    return output.clone()  # a fresh copy: in-place operations downstream must not touch it


class _Replay:
    """Lets the expanded Ablation-CAM forwards of one image skip the part before the layer.

    :meth:`record` runs around the image's first expanded forward: hooks on every
    module note the output of each call that *ends before the layer's call begins*
    (the outermost such calls of modules called exactly once; a call's record drops
    those of the calls nested in it, so at most the outermost outputs are held at
    once). :meth:`replay` runs
    around the image's later forwards: those modules, and the layer itself, return
    their recorded output (a copy) instead of running, through a ``forward``
    attribute set on the instance and deleted in ``finally``. Code between modules
    still runs, on batch-1 tensors. Only for a layer called once per forward; every
    replayed forward is checked through its un-ablated row like the first; the image
    is done again without replay if any check fails.
    """

    def __init__(self, model: nn.Module, layer: nn.Module, layer_output: torch.Tensor) -> None:
        self.model = model
        self.layer = layer
        self.layer_output = layer_output
        self.outputs: dict[nn.Module, torch.Tensor] = {}

    @contextlib.contextmanager
    def record(self) -> Iterator[None]:
        stack: list[nn.Module] = []
        calls: dict[nn.Module, int] = {}
        seen: dict[nn.Module, tuple[nn.Module | None, torch.Tensor]] = {}
        nested: dict[nn.Module, list[nn.Module]] = {}  # caller -> its recorded callees
        layer_started = False

        def before(module: nn.Module, _args: Any) -> None:
            nonlocal layer_started
            layer_started = layer_started or module is self.layer
            calls[module] = calls.get(module, 0) + 1
            stack.append(module)

        def after(module: nn.Module, _args: Any, output: Any) -> None:
            if not stack or stack.pop() is not module:
                raise _Untrusted("unbalanced module calls")
            if not layer_started and isinstance(output, torch.Tensor):
                for inner in nested.pop(module, ()):
                    seen.pop(inner, None)  # superseded by the module's own output (memory)
                caller = stack[-1] if stack else None
                seen[module] = (caller, output.detach().clone())
                nested.setdefault(caller, []).append(module)

        modules = list(self.model.modules())
        with forward_hooks([(m, before) for m in modules], pre=True, prepend=True), \
                forward_hooks([(m, after) for m in modules], prepend=True):
            yield
        once = {m for m, n in calls.items() if n == 1 and m in seen}
        self.outputs = {m: out for m, (caller, out) in seen.items()
                        if m in once and caller not in once}

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        patched: list[tuple[nn.Module, Any]] = []
        try:
            for module, output in [*self.outputs.items(), (self.layer, self.layer_output)]:
                patched.append((module, module.__dict__.get("forward")))
                module.forward = functools.partial(_recorded, output)
            yield
        finally:
            for module, own in reversed(patched):
                if own is None:
                    del module.forward
                else:
                    module.forward = own


def ablation_scores_expanded(model: nn.Module, inputs: torch.Tensor, layer: nn.Module,
                             acts: torch.Tensor, calls: int, scores: torch.Tensor,
                             base: torch.Tensor, target: ChunkTarget, *, step: int,
                             value: float) -> torch.Tensor | None:
    """Ablated target scores ``(B, C)``, image by image: each forward takes one image
    and replaces the layer's output by an un-ablated check row and up to ``step - 1``
    ablated copies, so only the part of the model after the layer runs on several rows
    (and, with :class:`_Replay`, only the first forward of an image runs the part
    before it). ``None`` when that cannot be trusted (the rule in the module
    docstring), in which case the caller runs :func:`ablation_scores_full`."""
    if step < 2 or not isinstance(scores, torch.Tensor) or scores.ndim == 0:
        return None
    batch, channels = acts.shape[:2]
    substitute = _Substitute(layer, calls, expand=True)
    tol = _check_tolerance(base.dtype, base.device)

    def run(i: int, rows: torch.Tensor, context: Any) -> torch.Tensor | None:
        """Target scores of the rows, or ``None`` if this forward cannot be trusted."""
        try:
            with context:
                outputs, seen = _substituted_forward(model, inputs[i:i + 1], layer, substitute, rows)
        except Exception:  # noqa: BLE001 - a genuine error recurs in the full path
            return None
        if (not substitute.replaced or seen != calls or not isinstance(outputs, torch.Tensor)
                or outputs.ndim == 0 or outputs.shape[0] != len(rows)):
            return None
        image = torch.full((len(rows),), i, dtype=torch.long, device=inputs.device)
        return target.select_rows(outputs, image)

    def image_scores(i: int, replay: _Replay | None) -> torch.Tensor | None:
        """Image ``i``'s ``C`` ablated scores, or ``None``; the check rows of all its
        forwards are compared at the end (one device synchronisation per image)."""
        checks, pieces = [], []
        for first in range(0, channels, step - 1):
            rows = _ablated_copies(acts, i, first, min(first + step - 1, channels), value)
            context = (contextlib.nullcontext() if replay is None
                       else replay.record() if first == 0 else replay.replay())
            row_scores = run(i, rows, context)
            if row_scores is None:
                return None
            checks.append(row_scores[0])
            pieces.append(row_scores[1:])
        scale = torch.maximum(base[i].abs(), scores[i].detach().abs().max())
        if not bool(((torch.stack(checks) - base[i]).abs() <= tol * scale).all()):
            return None
        return torch.cat(pieces)

    replaying = calls == 1
    per_image = []
    with progress(batch, "ablationcam", unit="image") as bar:
        for i in range(batch):
            ablated = image_scores(i, _Replay(model, layer, acts[i:i + 1])) if replaying else None
            if ablated is None:  # (again) without replay, and replay no more
                replaying = False
                ablated = image_scores(i, None)
            if ablated is None:
                return None
            per_image.append(ablated)
            bar.update(1)
    return torch.stack(per_image)


def ablation_scores_full(model: nn.Module, inputs: torch.Tensor, layer: nn.Module,
                         acts: torch.Tensor, calls: int, target: ChunkTarget, *, step: int,
                         value: float) -> torch.Tensor:
    """Ablated target scores ``(B, C)`` from ``B * C`` forwards of the whole model, in
    batches of ``step`` rows of all images together, the layer's output replaced at its
    last call."""
    batch, channels = acts.shape[:2]
    image = torch.arange(batch, device=inputs.device).repeat_interleave(channels)
    channel = torch.arange(channels, device=inputs.device).repeat(batch)
    substitute = _Substitute(layer, calls, expand=False)
    ablated_scores = []
    with progress(batch * channels, "ablationcam", unit="row") as bar:
        for start in range(0, batch * channels, step):
            rows = slice(start, start + step)
            ablated = acts[image[rows]].clone()
            ablated[torch.arange(len(ablated), device=inputs.device), channel[rows]] = value
            outputs, seen = _substituted_forward(model, inputs[image[rows]], layer, substitute, ablated)
            if not substitute.replaced or seen != calls:
                raise LayerError(
                    f"layer {_describe(layer)} ran {seen} time(s) in an ablated forward but "
                    f"{calls} in the first; Ablation-CAM needs a forward that calls the layer the "
                    "same number of times for every batch"
                )
            ablated_scores.append(target.select_rows(outputs, image[rows]))
            bar.update(len(ablated))
    return torch.cat(ablated_scores).reshape(batch, channels)


@torch_kernel(autograd=False)
def ablationcam(model, inputs, target, layer, *, forward_batch_size: int,
                ablation_value: float, relu: bool) -> torch.Tensor:
    """Ablation-CAM (Desai & Ramaswamy 2020): ``alpha_k = (y - y_k) / y`` with ``y_k``
    the target score when channel ``k`` of the layer is set to ``ablation_value``.

    The ablated scores come from :func:`ablation_scores_expanded` (only the part of
    the model after the layer runs on the ablated rows), or, where its checks fail,
    from :func:`ablation_scores_full`; see the module docstring."""
    step = _check_batch_size(forward_batch_size)
    with torch.no_grad():
        scores, acts, calls = layer_activations(model, inputs, layer)
        base = target.select(scores)
        ablated = ablation_scores_expanded(model, inputs, layer, acts, calls, scores, base, target,
                                           step=step, value=ablation_value)
        if ablated is None:
            ablated = ablation_scores_full(model, inputs, layer, acts, calls, target,
                                           step=step, value=ablation_value)
        weights = (base[:, None] - ablated) / base[:, None]
        return weighted_map(acts, weights[:, :, None, None].to(acts.dtype), relu=relu)
