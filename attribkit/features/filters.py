"""Filter grids: a first layer's weights as pictures, or what a layer's channels respond to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from attribkit.errors import InvalidOptionError, LayerError
from attribkit.features.maximize import maximize_activation
from attribkit.features.plots import plot_visualization, tile_grid
from attribkit.images import as_numpy
from attribkit.torch.checks import first_conv
from attribkit.torch.layers import resolve_layer


def filter_pictures(weight: Any, shared_scale: bool = False) -> list[np.ndarray]:
    """Conv weights ``(out, in, kh, kw)`` with ``in`` 1 or 3 -> ``(kh, kw, 3)`` tiles:
    ``0.5 + 0.5 * w / max|w|`` (zero is mid-grey), ``max`` per filter or, with
    ``shared_scale``, over the whole layer."""
    w = as_numpy(weight).astype(np.float64)
    if w.ndim != 4 or w.shape[1] not in (1, 3):
        raise LayerError(f"filters of shape {tuple(w.shape)} cannot be drawn as pictures: they "
                         "need 1 or 3 input channels (a first layer); use maximize=True to see "
                         "what a deeper layer's channels respond to")
    axes = None if shared_scale else (1, 2, 3)
    peak = np.abs(w).max(axis=axes, keepdims=True)
    tiles = 0.5 + 0.5 * w / np.where(peak > 0, peak, 1.0)
    if tiles.shape[1] == 1:
        tiles = np.repeat(tiles, 3, axis=1)
    return list(tiles.transpose(0, 2, 3, 1).astype(np.float32))


def filter_grid(model: nn.Module, layer: nn.Module | str | None = None, *, maximize: bool = False,
                channels: Sequence[int] | None = None, cols: int = 8, cell_size: float = 1.0,
                shared_scale: bool = False, title: str | None = None, **options: Any) -> Figure:
    """A grid of a conv layer's filters, or of the images its channels respond to most.

    * ``maximize=False`` (default): the weights of ``layer`` (default: the
      model's first ``Conv2d``) as RGB tiles, one per output channel, scaled
      by :func:`filter_pictures` (mid-grey is zero, each filter to its own
      peak unless ``shared_scale``). The layer needs 1 or 3 input channels.
    * ``maximize=True``: :func:`~attribkit.features.maximize_activation` of
      ``channels`` (default: all channels) of ``layer`` (default: the last
      spatial layer), all in one batch; ``options`` go to it (``steps``,
      ``lr``, ``image_size``, ``param``, ``mean``, ``std``, ``seed``, ...).

    Both draw at most the channels asked for, in order (``channels`` selects
    filters too).
    """
    if maximize:
        vis = maximize_activation(model, layer, channels, **options)
        return plot_visualization(vis, cols=cols, cell_size=cell_size, scores=False,
                                  title=title if title is not None else f"{vis.layer}: maximised channels")
    if options:
        raise InvalidOptionError(f"options {sorted(options)} are for maximize=True")
    if layer is None:
        found = first_conv(model)
        if found is None:
            raise LayerError(f"{type(model).__name__} has no convolution")
        name, module = found
    else:
        module, name = resolve_layer(model, layer, None)
    weight = getattr(module, "weight", None)
    if not isinstance(module, nn.Conv2d) or weight is None:
        raise LayerError(f"layer {name!r} is a {type(module).__name__}, not a Conv2d with weights")
    tiles = filter_pictures(weight.detach(), shared_scale)
    picked = range(len(tiles)) if channels is None else [int(c) for c in channels]
    bad = [c for c in picked if not 0 <= c < len(tiles)]
    if bad:
        raise InvalidOptionError(f"channels {bad} out of range: layer {name!r} has {len(tiles)} "
                                 f"filters (valid: 0..{len(tiles) - 1})")
    return tile_grid([tiles[c] for c in picked], [f"{c}" for c in picked], cols=cols,
                     cell_size=cell_size, title=title if title is not None else f"{name}: filters")
