"""Grids for feature visualisation: channel maps, maximised images, filters.

Built on :func:`attribkit.viz.figures.new_grid`, so the figures are plain,
headless-safe matplotlib ``Figure`` objects like every other attribkit plot
(write them with :func:`attribkit.viz.save`). Each cell shows one array
(``ax.images[0].get_array()``), titled with what it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch import nn

from attribkit.errors import InvalidOptionError, LayerError
from attribkit.images import as_numpy
from attribkit.viz.figures import new_grid


def tile_grid(tiles: Sequence[np.ndarray], labels: Sequence[str], *, cols: int = 8,
              cell_size: float = 1.2, title: str | None = None, cmap: str | None = None,
              vmin: float | None = None, vmax: float | None = None,
              interpolation: str = "nearest") -> Figure:
    """Tiles (``(h, w)`` maps or ``(h, w, 3)`` pictures) in rows of ``cols``;
    cells after the last tile are hidden."""
    if not tiles:
        raise InvalidOptionError("nothing to draw: no tiles")
    cols = max(1, min(cols, len(tiles)))
    fig, axes = new_grid(math.ceil(len(tiles) / cols), cols, cell_size)
    for ax, tile, label in zip(axes.flat, tiles, labels):
        ax.imshow(tile, cmap=cmap, vmin=vmin, vmax=vmax, interpolation=interpolation)
        ax.set_title(label, fontsize=8)
    for ax in list(axes.flat)[len(tiles):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def as_pictures(images: Any) -> list[np.ndarray]:
    """``(N, C, H, W)`` in ``[0, 1]`` -> ``(H, W, 3)`` RGB tiles (one channel: grey)."""
    arr = np.clip(as_numpy(images).astype(np.float32), 0.0, 1.0)
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    return list(arr[:, :3].transpose(0, 2, 3, 1))


def plot_feature_maps(maps: Any, index: int = 0, channels: Sequence[int] | None = None, *,
                      max_channels: int = 32, cols: int = 8, cmap: str = "viridis",
                      shared_scale: bool = True, cell_size: float = 1.2,
                      title: str | None = None) -> Figure:
    """The channel maps of image ``index`` of a :class:`~attribkit.features.FeatureMaps`.

    ``channels``: which channels, in order; default: the top-k channels when
    ``top_k`` was given, else the first ``max_channels``. With
    ``shared_scale`` every cell uses the colour range ``[min, max]`` of the
    shown maps, so brighter means more active across cells; otherwise each
    map is scaled to its own range.
    """
    acts = as_numpy(maps.activations[index])
    if acts.ndim != 3:
        raise LayerError(f"layer {maps.layer!r} has no spatial maps (shape {acts.shape})")
    if channels is None:
        top = maps.top_channels
        channels = as_numpy(top[index]).tolist() if top is not None else range(min(max_channels,
                                                                                    len(acts)))
    channels = [int(c) for c in channels]
    bad = [c for c in channels if not 0 <= c < len(acts)]
    if bad:
        raise InvalidOptionError(f"channels {bad} out of range: layer {maps.layer!r} has "
                                 f"{len(acts)} channels (valid: 0..{len(acts) - 1})")
    shown = acts[channels]
    low, high = (float(shown.min()), float(shown.max())) if shared_scale else (None, None)
    return tile_grid(list(shown), [f"ch {c}" for c in channels], cols=cols, cell_size=cell_size,
                     cmap=cmap, vmin=low, vmax=high,
                     title=title if title is not None else f"{maps.layer} (image {index})")


def plot_visualization(vis: Any, *, cols: int = 8, cell_size: float = 1.5,
                       scores: bool = True, title: str | None = None) -> Figure:
    """The images of a :class:`~attribkit.features.Visualization`, labelled with
    their target (and, with ``scores``, the objective reached)."""
    labels = vis.labels()
    if scores:
        labels = [f"{label}\n{float(s):.3g}" for label, s in zip(labels, vis.scores)]
    heading = title if title is not None else (vis.layer or "logits")
    return tile_grid(as_pictures(vis.images), labels, cols=cols, cell_size=cell_size,
                     title=heading, interpolation="bilinear")


def first_conv(model: nn.Module) -> tuple[nn.Module, str]:
    """The model's first ``Conv2d`` and its name."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return module, name
    raise LayerError(f"{type(model).__name__} has no Conv2d layer")


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
        from attribkit.features.maximize import maximize_activation

        vis = maximize_activation(model, layer, channels, **options)
        return plot_visualization(vis, cols=cols, cell_size=cell_size, scores=False,
                                  title=title if title is not None else f"{vis.layer}: maximised channels")
    if options:
        raise InvalidOptionError(f"options {sorted(options)} are for maximize=True")
    if layer is None:
        module, name = first_conv(model)
    else:
        from attribkit.torch.layers import resolve_layer

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
