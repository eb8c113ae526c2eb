"""Feature maps: a layer's activations, captured with a forward hook.

:func:`feature_maps` runs the model once (no autograd, eval mode, under
:func:`~attribkit.torch.guard.model_guard`) and records the output of one
layer, ``A`` of shape ``(B, C, h, w)``, with
:class:`~attribkit.torch.capture.LayerCapture` (the capture every attribkit
method uses). With ``top_k`` it also ranks each image's channels by their mean
activation ``mean_{y,x} A[b, c, y, x]``.

A layer module called more than once in a forward (a shared ``ReLU``) is read
at its **last** call, the rule the CAM engine and the automatic layer choice
use.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from attribkit.errors import InvalidOptionError
from attribkit.torch.capture import LayerCapture, tensor_output
from attribkit.torch.checks import as_image_batch
from attribkit.torch.guard import model_guard
from attribkit.torch.layers import resolve_layer


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
    with model_guard(model, exclusive=False):
        module, name = resolve_layer(model, layer, x)
        capture = LayerCapture(module, repr(name), check=tensor_output(name))
        with capture, torch.no_grad():
            capture.run(model, x)
    acts = capture.output
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
