"""The report of a dataset store (``explain_dataset``): one row per image, every method's map.

Each row holds the picture (a JPEG thumbnail), its id, label and the model's
prediction, each method's map blended over the picture, and the per-image
metric scores. A method's maps share one colour scale (its own): the
``100 - outlier_perc`` percentile of the magnitudes of all its maps is the top of
the scale, so the maps of one method can be compared from image to image; the
colour bar in the method's column header gives the values. Maps are embedded
as small grey images (the normalised magnitude as 0-255) and coloured and
blended by the page's script on canvases; a histogram of each map's values
(channels summed) is embedded for the large view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attribkit.datasets.store import AttributionStore, open_store
from attribkit.report.classes import ClassSpaces, class_spaces, model_class_names
from attribkit.report.page import (
    colormap_lut,
    data_uri,
    esc,
    gradient_css,
    number,
    page,
    sort_value,
    write,
)
from attribkit.report.marks import draw, store_marks
from attribkit.report.pictures import picture_source

HIST_BINS = 24
SIGN_CMAPS = {"absolute_value": "inferno", "positive": "Reds"}


def store_report(store: AttributionStore | str | Path, out: str | Path | None = None, *,
                 images: Any = None, class_names: Sequence[str] | None = None,
                 model_classes: Sequence[str] | str | None = None, size: int = 112,
                 map_size: int = 56, limit: int | None = None, sign: str = "absolute_value",
                 outlier_perc: float = 2.0, alpha: float = 0.5, title: str | None = None) -> Path:
    """Write the self-contained HTML report of ``store`` to ``out``; returns its path.

    Args:
        store: an :class:`~attribkit.datasets.store.AttributionStore` or its path.
        out: the HTML file (default: beside the store, ``RUN.html`` for ``RUN.zarr``).
        images: where the pictures are (the store holds only the maps): a folder
            (the image folder the store was made of; by default the folder the run
            recorded), or a dataset / tensor / array indexed by the store's ids
            (items ``image`` or ``(image, ...)``, CHW or HWC, normalised ones are
            denormalised as :func:`attribkit.images.to_display` does). Without
            them the maps are drawn alone.
        class_names: names for the labels' class indices (default: the store's class
            names, e.g. an image folder's class folders).
        model_classes: names of the model's outputs, which predictions and explained
            classes index: a list, or ``"imagenet"`` (default: the names the run recorded,
            if any). A label and a prediction are compared (a wrong prediction in red)
            only when they name the same classes; see :mod:`attribkit.report.classes`.
        size: thumbnail side in pixels (pictures and maps are drawn at this size).
        map_size: the side at most of each embedded map (the page upsamples it smoothly).
        limit: report only the first ``limit`` stored images.
        sign: ``absolute_value`` (magnitudes, colour map inferno) or ``positive``
            (the positive part, Reds).
        outlier_perc: the percent of largest magnitudes, over all maps of a method, that
            saturate its colour scale.
        alpha: the weight of the heat map where it is blended over the picture.
        title: the page title (default: the store's name).
    """
    if sign not in SIGN_CMAPS:
        raise ValueError(f"sign must be one of {', '.join(SIGN_CMAPS)}; got {sign!r}")
    if not isinstance(store, AttributionStore):
        store = open_store(store)
    out = Path(out) if out is not None else store.path.with_suffix(".html")
    if hasattr(store, "token_ids"):  # a text store: attribkit.report.text_store
        from attribkit.report.text_store import text_store_report

        return text_store_report(store, out, limit=limit, title=title)
    done = store.done
    rows = np.flatnonzero(done)
    if limit is not None:
        rows = rows[:limit]
    ids = store.ids
    labels, targets, predictions = store.labels, store.targets, store.predictions
    spaces = class_spaces(list(class_names) if class_names is not None else store.class_names,
                          model_class_names(model_classes, store), labels[rows] if labels is not None else None,
                          predictions.classes[rows] if predictions is not None else None)
    picture = picture_source(store, images, size)
    methods = store.methods
    layers = store.layers
    lut = colormap_lut(SIGN_CMAPS[sign])

    marks = store_marks(store, rows, size, spaces.model_class)  # target boxes / regions (attribkit.report.marks)
    thumbs = {int(r): picture(int(r)) for r in rows} if picture is not None else {}
    thumbs = {r: None if p is None else draw(p, marks.get(r)) for r, p in thumbs.items()}
    maps, hists, scales = {}, {}, {}
    for method in methods:
        maps[method], hists[method], scales[method] = method_maps(store, method, rows, sign=sign,
                                                                  map_size=map_size, outlier_perc=outlier_perc)
    metrics = store.metrics
    metric_names = list(store.settings.get("metrics", []))
    higher = _directions(metric_names)
    unreadable = dict(store.skipped)  # id -> why the item could not be read
    errors = ["" if str(i) not in unreadable else unreadable[str(i)] for i in ids]

    row_data, html_rows = [], []
    for n, r in enumerate(rows):
        r = int(r)
        label = spaces.label(labels[r]) if labels is not None else ""
        target = spaces.model_class(targets[r]) if targets is not None else ""
        pred = spaces.model_class(predictions.classes[r]) if predictions is not None else ""
        score = float(predictions.scores[r]) if predictions is not None else None
        wrong = labels is not None and predictions is not None and spaces.wrong(labels[r], predictions.classes[r])
        facts = " · ".join(part for part in (
            f"label {label}" if label else "",
            f"predicted {pred} ({number(score, 2)})" if pred else "",
            f"explained class {target}" if target else "",
            marks[r].facts(store.settings.get("image_shape") or [size, size], size) if r in marks else "",
            f"not readable: {errors[r]}" if errors[r] else "") if part)
        row_maps = {m: maps[m][n] for m in methods if maps[m][n] is not None}
        row_data.append({
            "id": str(ids[r]), "facts": facts, "maps": row_maps,
            **({"box": [round(v, 2) for v in marks[r].box]} if r in marks and marks[r].box else {}),
            "hist": {m: hists[m][n] for m in methods if hists[m][n] is not None},
            "metrics": {m: {k: _finite(metrics[m][k][r]) for k in metric_names} for m in methods},
        })
        html_rows.append(_row(n, str(ids[r]), label, pred, target, score, wrong, thumbs.get(r), methods,
                              metric_names, {m: {k: metrics[m][k][r] for k in metric_names} for m in methods},
                              size, errors[r]))

    class_field = "label" if labels is not None else ("prediction" if predictions is not None else "target")
    classes = _class_values(store, spaces, class_field, rows)
    if class_field == "label" and predictions is not None:  # the filter may be switched to predictions
        classes += [c for c in _class_values(store, spaces, "prediction", rows) if c not in classes]
    body = "\n".join([
        _intro(store, len(rows), picture is not None, sign, outlier_perc, spaces.note, bool(marks)),
        _controls(classes, class_field, labels is not None, predictions is not None,
                  spaces.to_model is not None, methods),
        "<div class=\"table-wrap\"><table id=\"images\" class=\"sortable\">",
        _header(methods, layers, metric_names, higher, scales, lut, sign),
        "<tbody>", *html_rows, "</tbody></table></div>",
        _viewer(methods, layers),
    ])
    data = {"kind": "store", "lut": lut, "alpha": alpha, "gradient": gradient_css(lut), "rows": row_data,
            "method_names": methods, "class_field": class_field,
            "methods": {m: {"layer": layers.get(m), "scale": _finite(scales[m])} for m in methods}}
    heading = title or f"attribkit report: {store.path.name}"
    subtitle = f"{len(rows)} images · methods {', '.join(methods)}"
    model = store.settings.get("model", {}).get("class")
    if model:
        subtitle += f" · model {model}"
    return write(page(heading, body, data, subtitle=subtitle), out)


# ------------------------------------------------------------------ maps


def method_maps(store: AttributionStore, method: str, rows: np.ndarray, *, sign: str = "absolute_value",
                map_size: int = 56, outlier_perc: float = 2.0
                ) -> tuple[list[str | None], list[dict | None], float]:
    """Each row's map of ``method`` as a grey data URI on the method's one scale, the
    histogram of its values (channels summed), and the scale (the value drawn brightest).

    The maps are read a chunk (one stored batch) at a time, so the memory needed is
    one batch of maps, plus the small maps."""
    array = store[method]
    small: list[np.ndarray | None] = []
    hists: list[dict | None] = []
    step = max(1, store.batch_size)
    for start in range(0, len(rows), step):
        picked = rows[start:start + step]
        lo, hi = int(picked.min()), int(picked.max()) + 1
        block = np.asarray(array[lo:hi], dtype=np.float32)[picked - lo]
        for values in block:
            m = values.sum(axis=0) if values.ndim == 3 else values.reshape(values.shape[-2:])
            if not np.isfinite(m).all():
                small.append(None)
                hists.append(None)
                continue
            counts, edges = np.histogram(m, bins=HIST_BINS)
            hists.append({"counts": counts.tolist(), "edges": [float(edges[0]), float(edges[-1])]})
            shown = np.abs(m) if sign == "absolute_value" else np.maximum(m, 0.0)
            small.append(shrink(shown, map_size))
    kept = np.concatenate([s[s > 0].ravel() for s in small if s is not None] or [np.zeros(0)])
    scale = float(np.percentile(kept, 100 - outlier_perc)) if kept.size else 0.0
    uris = []
    for s in small:
        if s is None:
            uris.append(None)
            continue
        grey = np.zeros(s.shape, np.uint8) if scale <= 0 else \
            (np.clip(s / scale, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
        uris.append(data_uri(grey, fmt="PNG" if max(grey.shape) <= 24 else "JPEG", quality=90))
    return uris, hists, scale


def shrink(m: np.ndarray, side: int) -> np.ndarray:
    """A 2-D map reduced (by area averaging) to at most ``side`` pixels a side."""
    from PIL import Image

    h, w = m.shape
    if max(h, w) <= side:
        return m.astype(np.float32)
    f = max(h, w) / side
    return np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize(
        (max(1, round(w / f)), max(1, round(h / f))), Image.Resampling.BOX), dtype=np.float32)


# ------------------------------------------------------------------ HTML


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _directions(metrics: Sequence[str]) -> dict[str, bool | None]:
    """Whether a higher score is better, per metric (``None`` if the metric is not registered)."""
    found: dict[str, bool | None] = {}
    for name in metrics:
        try:
            from attribkit.api import get_metric

            found[name] = bool(get_metric(name).higher_is_better)
        except Exception:  # noqa: BLE001 - a metric of a plugin that is gone: no arrow
            found[name] = None
    return found


def _class_values(store: AttributionStore, spaces: ClassSpaces, field: str, rows: np.ndarray) -> list[str]:
    """The distinct class names of ``field`` among ``rows``, in class order, for the filter."""
    column = {"label": store.labels, "target": store.targets,
              "prediction": store.predictions.classes if store.predictions is not None else None}[field]
    if column is None:
        return []
    name = spaces.label if field == "label" else spaces.model_class
    indices = sorted({int(column[int(r)]) for r in rows if int(column[int(r)]) >= 0})
    return list(dict.fromkeys(name(i) for i in indices))


def _method_text(method: str, layer: str | None, options: dict[str, Any]) -> str:
    """``gradcam at layer4 (relu=True)``: a method as the run used it."""
    where = f" at {layer}" if layer else ""
    given = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return f"{method}{where}" + (f" ({given})" if given else "")


def _intro(store: AttributionStore, shown: int, pictures: bool, sign: str, outlier_perc: float,
           classes_note: str, marked: bool = False) -> str:
    notes = [classes_note] if classes_note else []
    if marked and pictures:
        notes.append("Each picture outlines what its maps explain (the target box or region, green) "
                     "with the explained class.")
    options = store.settings.get("options") or {}
    if shown < len(store):
        notes.append(f"{shown} of the store's {len(store)} images are shown "
                     f"({int(store.done.sum())} stored).")
    if not pictures:
        notes.append("The pictures are not in the store: the maps are drawn alone. Pass the image "
                     "folder (attribkit report RUN --images DIR) or, in Python, "
                     "ak.write_report(store, images=dataset).")
    notes.append("Methods: " + "; ".join(_method_text(m, store.layers.get(m), options.get(m) or {})
                                         for m in store.methods) + ".")
    what = "magnitude" if sign == "absolute_value" else "positive part"
    notes.append(f"Each method has one colour scale for all its maps (its bar in the column header): the "
                 f"{what} of the map, channels summed, the top {outlier_perc:g}% saturated. Click a column "
                 "header to sort, a picture or map to enlarge it (Escape closes, ← → step through the images).")
    return "".join(f"<p class=\"note\">{esc(n)}</p>" for n in notes)


def _controls(classes: list[str], field: str, has_labels: bool, has_predictions: bool, compared: bool,
              methods: list[str]) -> str:
    options = "".join(f"<option value=\"{esc(c)}\">{esc(c)}</option>" for c in classes)
    parts = [f"<label>class <select id=\"class-filter\"><option value=\"\">all</option>{options}</select></label>"]
    if has_labels and has_predictions:
        parts.append("<label>of <select id=\"class-field\"><option value=\"label\">label</option>"
                     "<option value=\"prediction\">prediction</option></select></label>")
        if compared:  # labels and predictions name the same classes
            parts.append("<label><input type=\"checkbox\" id=\"wrong-only\"> misclassified only</label>")
    boxes = "".join(f"<label><input type=\"checkbox\" checked data-method-toggle=\"{esc(m)}\"> {esc(m)}</label>"
                    for m in methods)
    parts.append(f"<fieldset><legend>methods</legend>{boxes}</fieldset>")
    parts.append("<span id=\"count\" class=\"count\" aria-live=\"polite\"></span>")
    return f"<div class=\"controls\">{''.join(parts)}</div>"


def _sort_th(key: str, label: str, *, cls: str = "", extra: str = "", m: str | None = None) -> str:
    attrs = f" class=\"{cls}\"" if cls else ""
    if m is not None:
        attrs += f" data-m=\"{esc(m)}\""
    return (f"<th scope=\"col\" data-key=\"{esc(key)}\"{attrs}><button type=\"button\" class=\"sort\">"
            f"{label}</button>{extra}</th>")


def _header(methods: list[str], layers: dict, metric_names: list[str], higher: dict, scales: dict,
            lut: list, sign: str) -> str:
    cells = ["<th scope=\"col\">image</th>", _sort_th("id", "id"), _sort_th("label", "label"),
             _sort_th("prediction", "prediction"), _sort_th("score", "score", cls="num")]
    gradient = gradient_css(lut)
    for m in methods:
        layer = f"<div class=\"sem\">@ {esc(layers[m])}</div>" if layers.get(m) else ""
        bar = (f"<span class=\"cbar\" style=\"background: {gradient}\" role=\"img\" "
               f"aria-label=\"colour scale of {esc(m)}: 0 to {esc(number(scales[m]))}\"></span>"
               f"<span class=\"cbar-scale\"><span>0</span><span>≥ {esc(number(scales[m]))}</span></span>")
        cells.append(f"<th scope=\"col\" data-m=\"{esc(m)}\">{esc(m)}{layer}{bar}</th>")
    for k in metric_names:
        arrow = {True: " ↑", False: " ↓", None: ""}[higher.get(k)]
        for m in methods:
            cells.append(_sort_th(f"{m}:{k}", f"{esc(k)}{arrow}<br>{esc(m)}", cls="num", m=m))
    return f"<thead><tr>{''.join(cells)}</tr></thead>"


def _row(n: int, image_id: str, label: str, pred: str, target: str, score: float | None, wrong: bool,
         thumb: np.ndarray | None, methods: list[str], metric_names: list[str],
         scores: dict[str, dict[str, Any]], size: int, error: str) -> str:
    name = esc(image_id)
    if thumb is not None:
        picture = (f"<button type=\"button\" class=\"cell\" data-method=\"{esc(methods[0])}\" "
                   f"aria-label=\"enlarge {name}\"><img class=\"picture\" src=\"{data_uri(thumb, quality=82)}\" "
                   f"width=\"{size}\" height=\"{size}\" alt=\"{name}\"></button>")
    else:
        picture = "<span class=\"sem\">no picture</span>"
    pred_cls = " class=\"wrong\"" if wrong else ""
    cells = [f"<td>{picture}</td>",
             f"<td class=\"id\" data-key=\"id\" data-value=\"{name}\">{name}"
             + (f"<div class=\"wrong\">{esc(error)}</div>" if error else "") + "</td>",
             f"<td data-key=\"label\" data-value=\"{esc(label)}\">{esc(label)}</td>",
             f"<td data-key=\"prediction\" data-value=\"{esc(pred)}\"{pred_cls}>{esc(pred)}"
             + (f"<div class=\"sem\">explained: {esc(target)}</div>" if target and target != pred else "")
             + "</td>",
             f"<td class=\"num\" data-key=\"score\" data-value=\"{sort_value(score)}\">{number(score, 2)}</td>"]
    for m in methods:
        cells.append(f"<td data-m=\"{esc(m)}\"><button type=\"button\" class=\"cell\" data-method=\"{esc(m)}\" "
                     f"aria-label=\"enlarge the {esc(m)} map of {name}\"><canvas class=\"overlay\" "
                     f"data-method=\"{esc(m)}\" width=\"{size}\" height=\"{size}\"></canvas></button></td>")
    for k in metric_names:
        for m in methods:
            value = scores[m][k]
            cells.append(f"<td class=\"num\" data-m=\"{esc(m)}\" data-key=\"{esc(m)}:{esc(k)}\" "
                         f"data-value=\"{sort_value(value)}\">{number(value)}</td>")
    attrs = (f"data-row=\"{n}\" data-image-id=\"{name}\" data-label=\"{esc(label)}\" "
             f"data-prediction=\"{esc(pred)}\" data-target=\"{esc(target)}\" data-wrong=\"{int(wrong)}\"")
    return f"<tr {attrs}>{''.join(cells)}</tr>"


def _viewer(methods: list[str], layers: dict) -> str:
    tabs = "".join(f"<button type=\"button\" data-method=\"{esc(m)}\" aria-pressed=\"false\">{esc(m)}</button>"
                   for m in methods)
    return f"""<dialog id="viewer" class="viewer" aria-labelledby="viewer-title">
<div class="viewer-head"><h2 id="viewer-title"></h2>
<button type="button" id="viewer-close" aria-label="close the large view">close ✕</button></div>
<p id="viewer-facts" class="note"></p>
<div class="tabs" role="group" aria-label="method">{tabs}</div>
<div class="panes">
<figure><img id="view-picture" alt="the picture" width="300" height="300" hidden>
<figcaption>picture</figcaption></figure>
<figure><canvas id="view-heat" width="300" height="300"></canvas>
<figcaption>heat map (<span id="view-scale"></span>)<span class="cbar" id="view-cbar"></span>
<span class="cbar-scale"><span>0</span><span id="view-top"></span></span></figcaption></figure>
<figure><canvas id="view-blend" width="300" height="300"></canvas>
<figcaption>blended over the picture</figcaption></figure>
<figure><svg id="view-hist" width="300" height="300" viewBox="0 0 300 300" role="img"
aria-label="histogram of the map's values"></svg><figcaption>histogram of the map's values</figcaption></figure>
</div>
<p id="view-metrics" class="note"></p>
<p class="hint">← → previous / next image · Escape closes</p>
</dialog>"""
