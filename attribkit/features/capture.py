"""Feature maps: a layer's activations, captured with a forward hook.

:func:`feature_maps` runs the model once (no autograd, eval mode, under
:func:`~attribkit.torch.guard.model_guard`) and records the output of one
layer, ``A`` of shape ``(B, C, h, w)``. With ``top_k`` it also ranks each
image's channels by their mean activation ``mean_{y,x} A[b, c, y, x]``.

A layer module called more than once in a forward (a shared ``ReLU``) is read
at its **last** call, the rule the CAM engine and the automatic layer choice
use. :class:`LayerRecorder` is the hook both this module and
:mod:`~attribkit.features.maximize` use; it can stop the forward right after
that last call, so activation maximisation never runs the layers above its
target.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from attribkit.errors import InputError, InvalidOptionError, LayerError
from attribkit.torch.guard import model_guard
from attribkit.torch.layers import resolve_layer


class _StopForward(Exception):
    """Raised by the hook after the layer's last call; caught by :meth:`LayerRecorder.run`."""


class LayerRecorder:
    """Records the output of ``module`` during ``model(x)``.

    ``calls`` counts the layer's calls in the last :meth:`run`; with
    ``stop_after=n`` the forward is abandoned right after the ``n``-th call
    (the rest of the model is not computed).
    """

    def __init__(self, model: nn.Module, module: nn.Module, name: str) -> None:
        self.model, self.module, self.name = model, module, name
        self.output: Any = None
        self.calls = 0
        self.stop_after: int | None = None

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        self.output = output
        self.calls += 1
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise _StopForward

    @contextlib.contextmanager
    def attached(self) -> Iterator["LayerRecorder"]:
        """The hook is registered for the body and removed in ``finally``."""
        handle = self.module.register_forward_hook(self._hook)
        try:
            yield self
        finally:
            handle.remove()

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """``(layer output, model output)``; the model output is ``None`` when the
        forward stopped early. Must be called inside :meth:`attached`."""
        self.output, self.calls = None, 0
        scores = None
        try:
            scores = self.model(x)
        except _StopForward:
            pass
        if self.calls == 0:
            raise LayerError(f"layer {self.name!r} was not called in the forward pass of "
                             f"{type(self.model).__name__}")
        if not isinstance(self.output, torch.Tensor):
            raise LayerError(f"layer {self.name!r} returns a {type(self.output).__name__}, "
                             "not a tensor; pick a layer whose output is one tensor")
        return self.output, scores


def as_image_batch(images: Any, what: str = "images") -> torch.Tensor:
    """A ``(B, C, H, W)`` float tensor from a tensor or array (``(C, H, W)`` gets a batch axis)."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or not x.is_floating_point():
        raise InputError(f"{what} must be a float (B, C, H, W) batch, got a "
                         f"{tuple(x.shape)} {x.dtype} tensor")
    return x


@dataclasses.dataclass
class FeatureMaps:
    """What :func:`feature_maps` returns.

    Attributes:
        activations: the layer's output, detached, ``(B, C, h, w)`` (or ``(B, C)``
            for a non-spatial layer).
        layer: the layer's dotted name in the model.
        top_channels: with ``top_k``: ``(B, k)`` channel indices, per image,
            ordered by mean activation, largest first; else ``None``.
    """

    activations: torch.Tensor
    layer: str
    top_channels: torch.Tensor | None = None

    @property
    def channel_means(self) -> torch.Tensor:
        """``(B, C)``: each channel's activation averaged over the spatial positions."""
        a = self.activations
        return a.flatten(2).mean(2) if a.ndim > 2 else a

    def plot(self, index: int = 0, channels: Sequence[int] | None = None, **options: Any) -> Any:
        """A grid of image ``index``'s channel maps: see
        :func:`~attribkit.features.plots.plot_feature_maps`."""
        from attribkit.features.plots import plot_feature_maps

        return plot_feature_maps(self, index, channels, **options)


def feature_maps(model: nn.Module, images: Any, layer: nn.Module | str | None = None,
                 top_k: int | None = None) -> FeatureMaps:
    """The activations of ``layer`` for ``images``, captured by a forward hook.

    Args:
        model: an ``nn.Module``; it is left exactly as it was (the hook is
            removed in ``finally``, train/eval mode restored).
        images: the model inputs, ``(B, C, H, W)`` (normalised as the model expects).
        layer: a module, a dotted name (``"layer4.1"``) or ``None`` (the last
            layer with a spatial output, found by a probe forward).
        top_k: also rank each image's channels by mean activation
            ``mean_{y,x} A[b, c, y, x]`` and keep the ``top_k`` largest.

    Returns:
        a :class:`FeatureMaps` (``activations``, ``layer``, ``top_channels``);
        ``.plot()`` draws the channel grid.
    """
    x = as_image_batch(images)
    with model_guard(model):
        module, name = resolve_layer(model, layer, x)
        recorder = LayerRecorder(model, module, name)
        with recorder.attached(), torch.no_grad():
            acts, _ = recorder.run(x)
    acts = acts.detach()
    top = None
    if top_k is not None:
        channels = acts.shape[1] if acts.ndim > 1 else 1
        if (not isinstance(top_k, numbers.Integral) or isinstance(top_k, bool)
                or not 1 <= top_k <= channels):
            raise InvalidOptionError(f"top_k must be an integer in 1..{channels} (the channels "
                                     f"of layer {name!r}), got {top_k!r}")
        means = FeatureMaps(acts, name).channel_means
        top = means.argsort(dim=1, descending=True, stable=True)[:, :top_k]
    return FeatureMaps(acts, name, top)
