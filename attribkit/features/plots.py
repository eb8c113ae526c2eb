"""Grids for feature visualisation: channel maps and maximised images (filters: :mod:`.filters`).

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
