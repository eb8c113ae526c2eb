"""Grids: several methods on one model (:func:`compare`), one method on several
models (:func:`compare_models`). Rows are images, columns methods or models."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attribkit import reuse
from attribkit.images import to_display
from attribkit.registry import MAIN_METHODS
from attribkit.result import Attribution
from attribkit.viz.figures import (
    HEAT_MODES,
    ClassNames,
    add_colorbar,
    model_scores,
    new_grid,
    resolve_class_names,
    scored_label,
    targets_of,
    values_batch,
)
from attribkit.viz.overlays import draw_marks, marks_of
from attribkit.viz.rendering import render

MethodArg = str | tuple[str, Mapping[str, Any]]


def _method_options(methods: Sequence[MethodArg],
                    explain_options: Mapping[str, Any]) -> list[tuple[Any, dict]]:
    """``(spec, options)`` per method: shared options go to the methods that accept
    them, per-method options (``("saliency", {"abs": False})``) to their method."""
    from attribkit.api import get_method
    from attribkit.errors import InvalidOptionError

    resolved = []
    for entry in methods:
        name, own = (entry, {}) if isinstance(entry, str) else (entry[0], dict(entry[1]))
        resolved.append((get_method(name), own))
    for key in explain_options:
        if not any(key in spec.options for spec, _ in resolved):
            names = ", ".join(spec.name for spec, _ in resolved)
            raise InvalidOptionError(f"none of the methods ({names}) has an option {key!r}")
    return [(spec, {**{k: v for k, v in explain_options.items() if k in spec.options}, **own})
            for spec, own in resolved]


def _draw(columns: list[tuple[str, Attribution, Any]], display: Any, names: Any, *,
          show_image: bool, mode: str, sign: str, cell_size: float, title: str | None,
          render_options: Mapping[str, Any], row_labels: Sequence[str] | None = None,
          colorbar: bool = True) -> Figure:
    """Images x columns; ``columns`` are ``(header, result, probabilities)``. The first
    column (``show_image``) holds the inputs, each row is labelled (``row_labels``, else
    the image's number and the model's top class), and each heat-map column gets a
    colour bar (the scale of the normalised map, see :func:`~attribkit.viz.rendering.render`)."""
    offset = int(show_image)
    fig, axes = new_grid(len(display), len(columns) + offset, cell_size)
    if row_labels is not None and len(row_labels) != len(display):
        raise ValueError(f"{len(row_labels)} row labels for {len(display)} images")
    for j, (header, result, probs) in enumerate(columns):
        values = values_batch(result)
        targets = targets_of(result, len(values))
        marks = marks_of(result, len(values))  # a Box / Region target's box or outline
        for i, image in enumerate(display):
            ax = axes[i, j + offset]
            ax.imshow(render(values[i], image, mode=mode, sign=sign, **render_options))
            draw_marks(ax, marks[i], names, size=image.shape[:2])
            label = scored_label(targets[i], None if probs is None else probs[i], names)
            ax.set_title(f"{header}\n{label}" if label else header, fontsize=8)
        if colorbar and mode in HEAT_MODES:
            bar = add_colorbar(fig, axes[:, j + offset], sign, render_options.get("cmap"), location="bottom",
                               shrink=0.9, aspect=12 if len(display) > 1 else 8)
            bar.set_label(_scale_words(sign), fontsize=7)
            bar.ax.tick_params(labelsize=6)
    if show_image:
        for i, image in enumerate(display):
            axes[i, 0].imshow(image)
            axes[i, 0].set_title("input", fontsize=8)
    for i in range(len(display)):
        if row_labels is not None:
            text = str(row_labels[i])
        else:
            probs = next((p for _, _, p in columns if p is not None), None)
            top = None if probs is None else int(np.argmax(probs[i]))
            text = f"image {i}" + (f"\ntop: {scored_label(top, probs[i], names)}" if top is not None else "")
        axes[i, 0].set_ylabel(text, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def _scale_words(sign: str) -> str:
    """What a colour bar's values are: the map normalised per image (its top 2 % saturate)."""
    return {"all": "signed, per image", "positive": "positive part, per image",
            "negative": "negative part, per image"}.get(sign, "|attribution|, per image")


def compare(model: Any, images: Any, methods: Sequence[MethodArg] | str | None = None, target: Any = None, *,
            layer: Any = None, mode: str = "blended_heat_map", sign: str = "absolute_value",
            class_names: ClassNames = None, show_image: bool = True,
            row_labels: Sequence[str] | None = None, colorbar: bool = True,
            mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
            batch_size: int | None = None, cell_size: float = 2.2, title: str | None = None,
            cmap: str | Any | None = None, alpha: float = 0.5, outlier_perc: float = 2.0,
            threshold: float = 0.25, channels: str = "sum", **explain_options: Any) -> Figure:
    """Explain ``images`` with each of ``methods`` and draw a grid: images x methods.

    A result already computed for the same model (weights unchanged), images,
    method, options and target, by an earlier ``compare`` or a slow
    :func:`attribkit.explain`, is reused (see :mod:`attribkit.reuse`).

    Each cell is titled with the method and the explained class with the model's
    probability for it (``"gradcam\\ngreat grey owl (0.93)"``). Class names
    come from ``class_names`` (a sequence, a mapping, a
    :class:`~attribkit.images.ClassIndex` or ``"imagenet"``) or, when the model
    has 1000 outputs, from the ImageNet index.

    Args:
        model, images, target, layer, batch_size: as in :func:`attribkit.explain`.
        methods: names, or ``(name, options)`` pairs for per-method options.
            ``None``: one method per main family
            (:data:`attribkit.registry.MAIN_METHODS`, 7 columns and the image);
            ``"all"``: every registered method. Both skip (with a warning) the
            methods that fail on this model.
        show_image: a first column with the input images (default).
        row_labels: one label per image (e.g. file names or true classes), on the
            left of each row; default: the image's number and the model's top class.
        colorbar: a colour bar under each method's column (the scale of the
            per-image normalised map).
        mode, sign, cmap, alpha, outlier_perc, threshold, channels, mean, std:
            as in :func:`attribkit.viz.show` (one mode for the whole grid).
        **explain_options: method options, each given to the methods that
            accept it (an option no method accepts raises ``InvalidOptionError``).
    """
    from attribkit.api import explain, methods as registered
    from attribkit.text.detect import is_text_input

    if is_text_input(images, explain_options):  # texts: a line of tokens per method (attribkit.text.plots)
        from attribkit.text.plots import compare_texts

        return compare_texts(model, images, None if methods == "all" else methods, target,
                             batch_size=batch_size, cmap=cmap, title=title, **explain_options)
    skip_failures = methods is None or methods == "all"
    if methods is None:
        methods = list(MAIN_METHODS)
    elif methods == "all":
        methods = [spec.name for spec in registered()]
    probs = model_scores(model, images)
    seen = reuse.fingerprint(model, images)
    columns = []
    for spec, options in _method_options(methods, explain_options):
        try:
            call = dict(target=target, layer=layer, batch_size=batch_size, noise_tunnel=None,
                        options=spec.bind_options(options))
            result = reuse.lookup(seen, spec.name, **call)
            if result is None:
                result = explain(model, images, target, method=spec.name, layer=layer,
                                 batch_size=batch_size, **options)
                reuse.remember(seen, spec.name, result, **call)
        except Exception as exc:
            if not skip_failures:
                raise
            warnings.warn(f"compare: skipping {spec.name}: {exc}", stacklevel=2)
            continue
        columns.append((spec.name, result, probs))
    return _draw(columns, to_display(images, mean, std), resolve_class_names(class_names, probs.shape[1]),
                 show_image=show_image, mode=mode, sign=sign, cell_size=cell_size, title=title,
                 render_options=dict(cmap=cmap, alpha=alpha, outlier_perc=outlier_perc,
                                     threshold=threshold, channels=channels),
                 row_labels=row_labels, colorbar=colorbar)


def compare_models(models: Mapping[str, Any], images: Any, method: str = "saliency", target: Any = None, *,
                   layer: Any = None, mode: str = "blended_heat_map", sign: str = "absolute_value",
                   class_names: ClassNames = None, show_image: bool = True,
                   row_labels: Sequence[str] | None = None, colorbar: bool = True,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   batch_size: int | None = None, cell_size: float = 2.2, title: str | None = None,
                   cmap: str | Any | None = None, alpha: float = 0.5, outlier_perc: float = 2.0,
                   threshold: float = 0.25, channels: str = "sum", **options: Any) -> Figure:
    """One method on several models: a grid images x models, e.g. what a network
    looks at ``{"before": m0, "after": m1}`` fine-tuning.

    Each cell is titled with the model's name and the class it was explained
    for (``target=None``: each model's own top class) with its probability.
    ``layer`` may be a dotted name present in every model, or ``None`` (found
    per model). Other arguments as in :func:`compare`.
    """
    from attribkit.api import explain, get_method

    if not isinstance(models, Mapping):
        models = {f"model {k}": m for k, m in enumerate(models)}
    columns, classes = [], None
    for name, model in models.items():
        probs = model_scores(model, images)
        classes = probs.shape[1] if classes in (None, probs.shape[1]) else -1
        seen, spec = reuse.fingerprint(model, images), get_method(method)
        call = dict(target=target, layer=layer, batch_size=batch_size, noise_tunnel=None,
                    options=spec.bind_options(options))
        result = reuse.lookup(seen, spec.name, **call)
        if result is None:
            result = explain(model, images, target, method=method, layer=layer,
                             batch_size=batch_size, **options)
            reuse.remember(seen, spec.name, result, **call)
        columns.append((name, result, probs))
    method_name = columns[0][1].method if columns else method
    return _draw(columns, to_display(images, mean, std), resolve_class_names(class_names, classes),
                 show_image=show_image, mode=mode, sign=sign, cell_size=cell_size,
                 title=title if title is not None else method_name,
                 render_options=dict(cmap=cmap, alpha=alpha, outlier_perc=outlier_perc,
                                     threshold=threshold, channels=channels),
                 row_labels=row_labels, colorbar=colorbar)
