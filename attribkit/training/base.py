"""What the attribution-guided losses share: the output type, mask helpers, and a
loss that records the model's forward with hooks that live only for one call or
one ``with loss.watch():`` block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import nn

from attribkit.errors import InputError, InvalidOptionError
from attribkit.torch.capture import LayerCapture, forward_hook

__all__ = ["LossOutput", "centre_kernel"]


class LossOutput(NamedTuple):
    """What a loss call returns (unpacks as ``logits, penalty, maps``).

    ``logits``: the model's output ``(B, K)`` of the one forward the loss ran.
    ``penalty``: the weighted penalty, a scalar (or ``(B,)`` with ``reduction="none"``),
    to add to the task loss. ``maps``: what was penalised, per image -- the
    normalised CAM ``(B, H, W)`` (unit mass) for :class:`CAMLoss`, the input
    gradient ``(B, C, H, W)`` for :class:`RRRLoss`.
    """

    logits: torch.Tensor
    penalty: torch.Tensor
    maps: torch.Tensor


def centre_kernel(size: tuple[int, int], *, power: float = 1.0, device: Any = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(H, W)`` kernel ``(d(p) / d_max) ** power``: the distance of pixel ``p``
    from the image centre ``((H-1)/2, (W-1)/2)``, 0 at the centre and 1 in the
    corners."""
    h, w = size
    yy = torch.arange(h, device=device, dtype=dtype) - (h - 1) / 2
    xx = torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2
    d = torch.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)
    return (d / d.max().clamp(min=torch.finfo(dtype).tiny)) ** power


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "sum":
        return per_image.sum()
    return per_image


def _check_reduction(reduction: str) -> str:
    if reduction not in ("mean", "sum", "none"):
        raise InvalidOptionError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _spatial_mask(mask: Any, batch: int, size: tuple[int, int], name: str, device: Any,
                  dtype: torch.dtype) -> torch.Tensor:
    """``(H, W)`` or ``(B, H, W)`` or ``(B, 1, H, W)`` -> float ``(B or 1, H, W)``."""
    mask = torch.as_tensor(mask, device=device)
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[0] not in (1, batch) or tuple(mask.shape[-2:]) != tuple(size):
        raise InputError(f"{name} must have shape (H, W), (B, H, W) or (B, 1, H, W) with B={batch} and "
                         f"the input's (H, W)={tuple(size)}, got {tuple(mask.shape)}")
    return mask.to(dtype)


class _Recorder:
    """The hooks of one ``watch()`` block: the root model's input and output,
    and (for CAMLoss) the layer's output of the last forward, through
    :mod:`attribkit.torch.capture` (hooks that act only for the thread that
    opened the block and are removed when it closes)."""

    def __init__(self) -> None:
        self.inputs: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None
        self.capture: LayerCapture | None = None
        self.stack = contextlib.ExitStack()

    @property
    def acts(self) -> torch.Tensor | None:
        """The recorded layer's output in the last forward (``None`` if none)."""
        return None if self.capture is None else self.capture.output

    def hook(self, module: nn.Module, hook: Any, *, pre: bool = False) -> None:
        """Add a forward (pre-)hook for the rest of the block."""
        self.stack.enter_context(forward_hook(module, hook, pre=pre))

    def attach(self, capture: LayerCapture) -> None:
        """Record a layer for the rest of the block."""
        self.capture = self.stack.enter_context(capture)

    def clear(self) -> None:
        self.inputs = self.logits = None
        if self.capture is not None:
            self.capture.reset()

    def close(self) -> None:
        self.stack.close()
        self.inputs = self.logits = self.capture = None


class _WatchingLoss(nn.Module):
    """Shared plumbing: the model (kept out of the loss's own submodules, so
    ``loss.parameters()`` / ``state_dict()`` do not include it) and ``watch()``."""

    def __init__(self, model: nn.Module, weight: float, reduction: str) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise InputError(f"the model must be an nn.Module, got {type(model).__name__}")
        object.__setattr__(self, "model", model)  # not registered as a submodule
        self.weight = float(weight)
        self.reduction = _check_reduction(reduction)
        self._recorder: _Recorder | None = None
        self._probing = False  # True during CAMLoss's layer-finding probe forward

    # subclasses: extra hooks per watch block, and what the root pre-hook does to the input
    def _install(self, recorder: _Recorder) -> None:
        pass

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @contextlib.contextmanager
    def watch(self) -> Iterator["_WatchingLoss"]:
        """Record the forwards of ``self.model`` run inside the block, for
        :meth:`penalty`. Hooks are removed when the block ends, also on errors."""
        if self._recorder is not None:
            raise RuntimeError(f"{type(self).__name__}.watch() blocks cannot be nested")
        recorder = _Recorder()

        def pre_hook(_module: nn.Module, args: tuple) -> tuple | None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise InputError(f"{type(self).__name__} needs a model whose first forward argument "
                                 "is the image batch tensor")
            if self._probing:
                return None
            x = self._prepare_input(args[0])
            recorder.clear()
            recorder.inputs = x
            return None if x is args[0] else (x, *args[1:])

        def post_hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            if self._probing:
                return
            if not isinstance(output, torch.Tensor) or output.ndim != 2:
                raise InputError(f"{type(self).__name__} needs a model that returns (B, K) class scores, "
                                 f"got {type(output).__name__}"
                                 f"{tuple(output.shape) if isinstance(output, torch.Tensor) else ''}")
            recorder.logits = output

        self._recorder = recorder
        try:
            recorder.hook(self.model, pre_hook, pre=True)
            recorder.hook(self.model, post_hook)
            self._install(recorder)
            yield self
        finally:
            recorder.close()
            self._recorder = None

    def _recorded(self) -> _Recorder:
        rec = self._recorder
        if rec is None:
            raise RuntimeError(f"{type(self).__name__}.penalty() reads the forward recorded by "
                               "`with loss.watch(): model(x)`; call it inside the block, or call the loss "
                               "itself: `out = loss(x, ...)`")
        if rec.logits is None or rec.inputs is None:
            raise RuntimeError(f"{type(self).__name__}.penalty(): no forward of the model was recorded "
                               "since the watch block started (or since the last penalty())")
        return rec

    def extra_repr(self) -> str:
        return f"model={type(self.model).__name__}, weight={self.weight}, reduction={self.reduction!r}"
