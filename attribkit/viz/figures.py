"""Figures: :func:`show` (any Attribution), :func:`show_panels` (FlashTorch's four
panels) and :func:`save`. Pixels come from :mod:`attribkit.viz.rendering`.

Figures are plain :class:`matplotlib.figure.Figure` objects, not pyplot
figures: nothing depends on a display or a GUI backend (headless-safe), no
global figure list grows, and Jupyter still shows a returned figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attribkit.images import ClassIndex, as_batch, as_numpy, class_label, imagenet_classes, to_display
from attribkit.result import Attribution, bilinear_resize
from attribkit.text.result import TokenAttribution
from attribkit.viz.overlays import draw_marks, marks_of
from attribkit.viz.rendering import CMAPS, render, standardize_rgb

ClassNames = Sequence[str] | Mapping[int, str] | ClassIndex | str | None
HEAT_MODES = ("heat_map", "blended_heat_map")


def values_batch(result: Any) -> np.ndarray:
    """An :class:`Attribution` or a tensor/array of maps -> ``(B, C, h, w)`` NumPy."""
    if isinstance(result, Attribution):
        return as_batch(result.numpy(), batched=True)
    return as_batch(result)


def targets_of(result: Any, n: int) -> list[Any]:
    """The per-image target classes of ``result`` (``None`` where unknown)."""
    target = getattr(result, "target", None)
    found = [] if target is None else [int(t) for t in as_numpy(target).reshape(-1)]
    return (found + [None] * n)[:n]


def resolve_class_names(class_names: ClassNames, classes: int | None = None) -> Any:
    """``"imagenet"`` -> the ImageNet index; ``None`` -> the ImageNet index when
    the model has 1000 outputs, else ``None`` (labels read ``class N``)."""
    if isinstance(class_names, str):
        if class_names.lower() != "imagenet":
            raise ValueError(f"class_names must be a sequence, a mapping or 'imagenet', got {class_names!r}")
        return imagenet_classes()
    if class_names is None and classes == 1000:
        return imagenet_classes()
    return class_names


def new_grid(rows: int, cols: int, cell_size: float = 2.5) -> tuple[Figure, np.ndarray]:
    """A figure with a ``rows x cols`` array of image axes (ticks hidden)."""
    fig = Figure(figsize=(cols * cell_size, rows * cell_size), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def add_colorbar(fig: Figure, ax: Any, sign: str, cmap: Any = None, **options: Any) -> Any:
    """A colorbar for a heat map of ``sign``: ``[-1, 1]`` for ``all``, else ``[0, 1]``; ``ax``
    is one axes or several (one bar beside them all); ``options`` go to ``fig.colorbar``."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cm = colormaps[cmap or CMAPS[sign]] if cmap is None or isinstance(cmap, str) else cmap
    low = -1.0 if sign == "all" else 0.0
    options.setdefault("shrink", 0.8)
    return fig.colorbar(ScalarMappable(Normalize(low, 1.0), cm), ax=ax, **options)


def show(result: Attribution | Any, images: Any = None, *, mode: str | Sequence[str] | None = None,
         sign: str | Sequence[str] = "absolute_value", cmap: str | Any | None = None,
         alpha: float = 0.5, outlier_perc: float = 2.0, threshold: float = 0.25,
         channels: str = "sum", mean: Sequence[float] | None = None,
         std: Sequence[float] | None = None, colorbar: bool | str = False, titles: bool = True,
         class_names: ClassNames = None, title: str | None = None,
         cell_size: float = 2.5) -> Figure:
    """Draw attributions: one row per image, one column per ``mode``. A token attribution
    (text) is drawn by :func:`attribkit.text.plots.token_figure` instead (``cmap``,
    ``title`` and ``titles`` apply).

    Args:
        result: an :class:`~attribkit.result.Attribution`, or maps as a tensor
            or array (``(B, C, H, W)``, ``(C, H, W)``, ``(H, W)``, channels-last too).
        images: the explained inputs (tensor or array, CHW or HWC, batch or one
            image); normalised inputs are denormalised (see ``mean``/``std``). A
            result of several maps per image (``result.meta["image_index"]``, e.g.
            ``Labels([3, 7])`` or several boxes) takes the explained images, and each
            row is drawn on its own image.
        mode: one mode or a sequence of them (columns): ``heat_map``,
            ``blended_heat_map``, ``masked_image``, ``alpha_scaling``,
            ``original_image``. Default: ``blended_heat_map`` with images,
            ``heat_map`` without.
        sign: ``all``, ``positive``, ``negative`` or ``absolute_value``; one for
            every column or one per column.
        cmap, alpha, outlier_perc, threshold, channels: see :func:`~attribkit.viz.rendering.render`.
        mean, std: how ``images`` were normalised. Neither given: float images
            outside ``[0, 1]`` are denormalised with the ImageNet statistics.
        colorbar: ``True``: a colour bar beside every heat-map cell; ``"column"``: one
            under each heat-map column.
        titles: column headers (mode and sign), row labels (the explained class)
            and the method as the figure title.
        class_names: names for the row labels: a sequence, a mapping, a
            :class:`~attribkit.images.ClassIndex` or ``"imagenet"``.
            A ``Box`` target's box and a ``Region`` target's mask outline are drawn on
            every cell of their row, labelled with the class (its name when known,
            else its number; :mod:`attribkit.viz.overlays`).
        title: the figure title (default: the method and layer, and the explained
            class when every image was explained for the same one).
        cell_size: inches per image.

    Returns:
        the figure; each cell's pixels are ``render(...)`` of that image and map
        (``ax.images[0].get_array()``).
    """
    if isinstance(result, TokenAttribution):
        from attribkit.text.plots import token_figure

        if images is not None:
            raise ValueError("a token attribution is drawn from its tokens: ak.show(result), without images")
        return token_figure(result, cmap=cmap, title=title, titles=titles)
    values = values_batch(result)
    display = to_display(images, mean, std) if images is not None else None
    display = rows_images(result, display, len(values))
    modes = [mode] if isinstance(mode, str) else list(mode or [])
    modes = modes or ["blended_heat_map" if display is not None else "heat_map"]
    signs = [sign] * len(modes) if isinstance(sign, str) else list(sign)
    if len(signs) != len(modes):
        raise ValueError(f"give one sign or one per mode: {len(modes)} modes, {len(signs)} signs")
    names = resolve_class_names(class_names)
    targets = targets_of(result, len(values))
    marks = marks_of(result, len(values))
    input_size = getattr(result, "input_size", None)
    input_size = tuple(input_size[-2:]) if input_size else None

    fig, axes = new_grid(len(values), len(modes), cell_size)
    for i in range(len(values)):
        image = display[i] if display is not None else None
        for j, (m, s) in enumerate(zip(modes, signs)):
            ax = axes[i, j]
            drawn = render(values[i], image, mode=m, sign=s, cmap=cmap, alpha=alpha,
                           outlier_perc=outlier_perc, threshold=threshold, channels=channels)
            ax.imshow(drawn)
            draw_marks(ax, marks[i], names, size=drawn.shape[:2], input_size=input_size)
            if colorbar is True and m in HEAT_MODES:
                add_colorbar(fig, ax, s, cmap)
            if titles and i == 0:
                ax.set_title(m if m == "original_image" else f"{m}\n({s})", fontsize=9)
        if titles and targets[i] is not None:
            axes[i, 0].set_ylabel(class_label(targets[i], names), fontsize=9)
    if colorbar == "column":
        for j, (m, s) in enumerate(zip(modes, signs)):
            if m in HEAT_MODES:
                bar = add_colorbar(fig, axes[:, j], s, cmap, location="bottom", shrink=0.9,
                                   aspect=12 if len(values) > 1 else 8)
                bar.ax.tick_params(labelsize=7)
    heading = title
    if heading is None and titles and isinstance(result, Attribution):
        heading = result.method + (f" @ {result.layer}" if result.layer else "")
        if targets and targets[0] is not None and all(t == targets[0] for t in targets):
            label = class_label(targets[0], names)  # "class 713" when no name is known
            heading += f" · {label}" if label == f"class {int(targets[0])}" else f" · class {label}"
    if heading:
        fig.suptitle(heading)
    return fig


def rows_images(result: Any, display: np.ndarray | None, rows: int) -> np.ndarray | None:
    """The picture of each of ``rows`` maps: ``display[result.meta["image_index"]]`` when
    the result explained several things per image (one row each), else ``display``."""
    index = getattr(result, "meta", {}).get("image_index") if isinstance(result, Attribution) else None
    if display is None:
        return None
    if index is not None:
        index = np.asarray(as_numpy(index), dtype=np.int64).reshape(-1)
        if len(index) != rows or (len(index) and not 0 <= index.min() <= index.max() < len(display)):
            raise ValueError(f"{rows} maps of {int(index.max()) + 1 if len(index) else 0} images "
                             f"(result.meta['image_index']), but {len(display)} images were given")
        return display[index]
    if len(display) != rows:
        raise ValueError(f"{rows} maps but {len(display)} images")
    return display


def model_scores(model: Any, images: Any) -> np.ndarray:
    """Softmax probabilities ``(B, classes)`` of ``model`` on ``images``, the model
    left as it was (eval mode for the call, no gradients)."""
    import torch

    if isinstance(model, torch.nn.Module):
        from attribkit.torch.guard import model_guard

        with model_guard(model), torch.no_grad():
            scores = model(images)
    else:
        from attribkit.backends.run import model_scores as framework_scores

        scores = torch.as_tensor(framework_scores(model, images))  # JAX/Keras through their backend
    scores = scores.detach().float().cpu()
    return torch.softmax(scores.reshape(len(scores), -1), dim=1).numpy()


def scored_label(target: Any, probs: np.ndarray | None, names: Any) -> str:
    """``"name (0.93)"``: the class label with the model's probability for it."""
    if target is None:
        return ""
    label = class_label(target, names)
    if probs is not None and 0 <= int(target) < probs.shape[-1]:
        label += f" ({probs[int(target)]:.2f})"
    return label


def show_panels(model: Any, images: Any, method: str = "saliency", target: Any = None, *,
                layer: Any = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None, class_names: ClassNames = None,
                cmap: str | Any | None = None, alpha: float = 0.5, outlier_perc: float = 2.0,
                batch_size: int | None = None, cell_size: float = 2.5, **options: Any) -> Figure:
    """FlashTorch's four panels for one method, one row per image.

    Columns: the input image; the attribution's three channels as a picture
    (:func:`~attribkit.viz.rendering.standardize_rgb`, so signed gradients show
    as colour around grey); the channel-max map (per pixel the channel of largest
    magnitude, as an ``absolute_value`` heat map); and that map blended over
    the image. Methods with an ``abs`` option (saliency) are run with
    ``abs=False`` unless you pass it, so the gradient panel keeps its signs.
    Layer maps (one channel) are upsampled and shown grey in the second panel.
    Other arguments are as in :func:`show` and :func:`attribkit.explain`.
    """
    from attribkit.api import explain, get_method

    spec = get_method(method)
    if "abs" in spec.options:
        options.setdefault("abs", False)
    result = explain(model, images, target, method=spec.name, layer=layer,
                     batch_size=batch_size, **options)
    probs = model_scores(model, images)
    names = resolve_class_names(class_names, probs.shape[1])
    display = to_display(images, mean, std)
    values = values_batch(result)
    targets = targets_of(result, len(values))
    headers = ("input image", "gradients (RGB)", "max gradients", "overlay")
    fig, axes = new_grid(len(values), 4, cell_size)
    for i, image in enumerate(display):
        v = values[i]
        if v.shape[-2:] != image.shape[:2]:
            v = bilinear_resize(v, image.shape[:2])
        common = dict(sign="absolute_value", channels="max", cmap=cmap, outlier_perc=outlier_perc)
        cells = (image, standardize_rgb(v), render(v, image, mode="heat_map", **common),
                 render(v, image, mode="blended_heat_map", alpha=alpha, **common))
        for j, rgb in enumerate(cells):
            axes[i, j].imshow(rgb)
            if i == 0:
                axes[i, j].set_title(headers[j], fontsize=9)
        if targets[i] is not None:
            axes[i, 0].set_ylabel(scored_label(targets[i], probs[i], names), fontsize=9)
    fig.suptitle(result.method + (f" @ {result.layer}" if result.layer else ""))
    return fig


def save(fig: Figure | np.ndarray, path: str | Path, *, dpi: int = 100) -> Path:
    """Write a figure (or an ``(H, W, 3)`` array from ``render``, pixel for pixel)
    to ``path``; the format follows the suffix (``.png`` when there is none).
    Parent folders are created. Returns the path written."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(fig, np.ndarray):
        from matplotlib.image import imsave

        imsave(path, np.clip(fig, 0.0, 1.0))
    else:
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


__all__ = ["save", "show", "show_panels"]
