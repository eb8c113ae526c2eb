"""What :func:`ak.evaluate <attribkit.evaluation.api.evaluate>` checks before any metric
runs, and what it does with the scores a metric cannot define.

Before any work (each a one-line ``AttribkitError`` naming the argument, the shapes
and the metrics):

- images: as ``ak.explain`` checks them (:func:`attribkit.torch.checks.prepare_inputs`),
  and at least 2 pixels (metrics compare pixels);
- maps (:func:`relevance_maps`): ``(B, H, W)``, ``(B, 1, H, W)`` or ``(B, C, H, W)`` (``C``
  the images' channels, summed) at the images' size, or a smaller layer map of the
  same aspect ratio (a CAM, upsampled bilinearly); one map per image; finite;
- masks (:func:`evidence_masks`): ``(B, H, W)`` or ``(B, 1, H, W)``, bool or 0/1;
- targets (:func:`target_rows`, :func:`metric_targets`, :func:`class_targets`): one class
  index per image in the model's range, or a target object (bound to the rows) or callable
  that reads the first image's output; metrics that compare a classifier's classes refuse
  the latter (:func:`refuse_class_metrics`).

After each metric (:func:`run_metric`, :func:`undefined_scores`): a score that is NaN or infinite, or the
score of a metric that orders pixels by relevance (:data:`~attribkit.evaluation.plugin.RANKING`)
for a constant map, becomes NaN, with one :class:`~attribkit.errors.MetricWarning`
naming the metric, the images and why.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from attribkit.errors import InputError, MetricWarning, TargetError


def _for(names: Sequence[str]) -> str:
    return f" (ak.evaluate, metrics: {', '.join(names)})"


def _tensor(value: Any, what: str, names: Sequence[str]) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"{what} must be a tensor or array, got {type(value).__name__}"
                             f"{_for(names)}") from exc
    if value.is_complex():
        raise InputError(f"{what} must be real, got a {value.dtype} tensor{_for(names)}")
    return value


def check_image_size(x: torch.Tensor, names: Sequence[str]) -> None:
    """``InputError`` for images of fewer than 2 pixels: every metric compares pixels."""
    h, w = x.shape[-2:]
    if h * w < 2:
        raise InputError(f"images of {h}x{w} pixel hold nothing to compare: metrics need at least "
                         f"2 pixels, got inputs of shape {tuple(x.shape)}{_for(names)}")


def _layer_map_of(mh: int, mw: int, h: int, w: int) -> bool:
    """A map no larger than the image with the image's aspect ratio (to a pixel or 25 %)."""
    if mh > h or mw > w:
        return False
    expected = mh * w / h
    return abs(mw - expected) <= max(1.0, 0.25 * expected)


def relevance_maps(values: Any, x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """``(B, H, W)`` float pixel relevance from the maps given for images ``x`` (see the
    module docstring for what is accepted), or ``InputError``."""
    from attribkit.evaluation.functional import pixel_relevance
    from attribkit.torch.checks import check_finite

    v = _tensor(values, "relevance", names)
    b, c, h, w = x.shape
    shape, images = tuple(v.shape), tuple(x.shape)
    if v.dtype == torch.bool or v.ndim not in (3, 4):
        raise InputError(f"relevance must be (B, H, W), (B, 1, H, W) or (B, C, H, W) maps, got a {shape} "
                         f"{v.dtype} tensor for images of shape {images}{_for(names)}")
    if len(v) != b:
        raise InputError(f"relevance holds {len(v)} maps for {b} images (relevance {shape}, inputs "
                         f"{images}){_for(names)}")
    mh, mw = v.shape[-2:]
    if (mh, mw) == (h, w):
        if v.ndim == 4 and v.shape[1] not in (1, c):
            raise InputError(f"relevance of shape {shape} has {v.shape[1]} channels; maps at the images' "
                             f"size take 1 or the images' {c}{_for(names)}")
    elif not _layer_map_of(mh, mw, h, w):
        raise InputError(f"relevance maps of {mh}x{mw} do not fit images of {h}x{w} (relevance {shape}, "
                         f"inputs {images}): give maps at the images' size, or a smaller layer map of "
                         f"the same aspect ratio{_for(names)}")
    rel = pixel_relevance(v.to(x.device), (h, w))
    try:
        check_finite(rel, "relevance maps")
    except InputError as exc:
        raise InputError(f"{exc}{_for(names)}") from exc
    return rel


def evidence_masks(masks: Any, x: torch.Tensor, names: Sequence[str],
                   image_index: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, H, W)`` bool masks for images ``x``: ``(B, H, W)`` or ``(B, 1, H, W)``, bool or
    0/1 numbers, or ``InputError``. With ``image_index`` (rows of several per image),
    masks with one entry per image (not per row) are indexed by it."""
    m = _tensor(masks, "masks", names)
    b, _, h, w = x.shape
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if image_index is not None and m.ndim == 3 and len(m) != b and len(m) > int(image_index.max()):
        m = m[image_index.to(m.device)]
    if tuple(m.shape) != (b, h, w):
        raise InputError(f"masks must be (B, H, W) = {(b, h, w)} for inputs of shape {tuple(x.shape)}, "
                         f"got {tuple(masks.shape) if hasattr(masks, 'shape') else tuple(m.shape)}"
                         f"{_for(names)}")
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise InputError(f"masks must be bool or 0/1, got {m.dtype} values other than 0 and 1"
                             f"{_for(names)}")
        m = m != 0
    return m.to(x.device)


def class_targets(targets: Any, predict: Callable[[torch.Tensor], Any], x: torch.Tensor,
                  names: Sequence[str]) -> torch.Tensor:
    """``(B,)`` class indices: ``targets`` checked as ``ak.explain`` checks them (form,
    length, range against the model's outputs, negatives included), or each image's top
    class for None; one forward of the batch (None) or of its first image."""
    from attribkit.torch.targets import ChunkTarget, parse_target

    try:
        parsed = parse_target(targets, len(x))
    except TargetError as exc:
        raise TargetError(f"{exc}{_for(names)}") from exc
    with torch.no_grad():
        scores = torch.as_tensor(predict(x if parsed is None else x[:1]))
    try:
        return ChunkTarget(parsed).indices_for(scores).to(x.device)
    except TargetError as exc:
        raise TargetError(f"{exc}{_for(names)}") from exc


def evidence_boxes(boxes: Any, x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """``(N, H, W)`` masks of x1y1x2y2 ``boxes`` at the size of images ``x``
    (:func:`attribkit.evaluation.localisation.box_masks`), or ``InputError``."""
    from attribkit.evaluation.localisation import box_masks

    try:
        return box_masks(boxes, *x.shape[-2:])
    except (InputError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{exc}{_for(names)}") from exc


def target_rows(x: torch.Tensor, targets: Any, attribution: Any,
                names: Sequence[str]) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
    """``(images per map row, target, image_index)``: the target to score and the image of
    each map row.

    ``targets`` None with an :class:`~attribkit.result.Attribution`: its bound target
    object (``meta["target"]``), else its class indices. A target that explains several
    things per image (``Labels([3, 7])``, a list of ``(K_i, 4)`` boxes) is expanded as
    ``ak.explain`` expands it. With an ``image_index`` (the attribution's, or the
    expansion's), ``x`` are the images given to ``explain`` and row ``r`` is scored on
    ``x[image_index[r]]``; ``InputError`` when the index names an image beyond ``x``."""
    from attribkit.targets.base import Target

    index = attribution.meta.get("image_index") if attribution is not None else None
    index = None if index is None else torch.as_tensor(index).long().cpu()
    if targets is None and attribution is not None:
        targets = attribution.meta.get("target", attribution.target)
    elif isinstance(targets, Target):
        try:
            expanded = targets.expand(len(x))
        except TargetError as exc:
            raise TargetError(f"{exc}{_for(names)}") from exc
        if expanded is not None:
            own, targets = expanded
            if index is not None and not torch.equal(own.cpu(), index):
                raise TargetError(f"targets= expands to {len(own)} rows that differ from the "
                                  f"attribution's image_index ({len(index)} rows): pass the "
                                  f"target given to explain, or none{_for(names)}")
            index = own.cpu()
    if index is None:
        return x, targets, None
    if len(index) == 0 or int(index.min()) < 0 or int(index.max()) >= len(x):
        top = int(index.max()) if len(index) else -1
        raise InputError(f"the attribution's rows belong to images 0..{top} (meta['image_index']) but "
                         f"{len(x)} images were given: pass the images given to explain"
                         f"{_for(names)}")
    return x[index.to(x.device)], targets, index


def refuse_class_metrics(target: Any, specs: Sequence[Any], options: Sequence[dict[str, Any]],
                         names: Sequence[str]) -> None:
    """``TargetError`` when a metric that compares a classifier's classes
    (:func:`attribkit.evaluation.scoring.needs_classes`) gets a target object other
    than ``Class``, or a callable."""
    from attribkit.evaluation import scoring
    from attribkit.targets import Class, Target

    plain = not callable(target) and not isinstance(target, Target)
    if plain or isinstance(target, Class):
        return
    for spec, opts in zip(specs, options):
        if scoring.needs_classes(spec.name, opts):
            extra = (f" (or {scoring.PREDICTION_OPTION}=False)"
                     if spec.name not in scoring.CLASS_METRICS else "")
            raise TargetError(f"{scoring.refusal(spec.name, target)}{extra}{_for(names)}")


def metric_targets(target: Any, predict: Callable[[torch.Tensor], Any], x: torch.Tensor,
                   names: Sequence[str]) -> Any:
    """What metrics score (:mod:`attribkit.evaluation.scoring`): ``(B,)`` class indices
    for class targets (``ak.Class`` included: the same numbers as its int), else the
    target object bound to the rows or the callable, checked on one forward of the
    first image (the output it reads, its ranges, one scalar per row)."""
    from attribkit.targets import Class, Target
    from attribkit.torch.targets import ChunkTarget

    if isinstance(target, Class):
        try:
            target = target.bind(len(x)).labels()
        except TargetError as exc:
            raise TargetError(f"{exc}{_for(names)}") from exc
    if not isinstance(target, Target) and not (callable(target) and not isinstance(target, torch.Tensor)):
        return class_targets(target, predict, x, names)
    try:
        bound = target.bind(len(x)) if isinstance(target, Target) else target
        first = bound.take(torch.tensor([0])) if isinstance(bound, Target) else bound
        with torch.no_grad():
            ChunkTarget(first).select(predict(x[:1]))
    except TargetError as exc:
        raise TargetError(f"{exc}{_for(names)}") from exc
    return bound


def warn_unused_masks(specs: Sequence[Any]) -> None:
    """A :class:`MetricWarning` when masks were given but no requested metric reads them."""
    if specs and not any("ground_truth" in s.needs for s in specs):
        warnings.warn(MetricWarning(
            f"masks= is read by none of the metrics {', '.join(s.name for s in specs)} (only those that "
            "need ground truth, e.g. pointing_game, auc): ignored"), stacklevel=3)


def degenerate_images(rel: torch.Tensor, x: torch.Tensor, masks: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``{reason: (B,) bool}``: the images for which a score may be undefined."""
    flat = rel.flatten(1)
    found = {"its map is constant": flat.amax(1) == flat.amin(1),
             "the image is constant": x.flatten(1).amax(1) == x.flatten(1).amin(1)}
    if masks is not None:
        m = masks.flatten(1)
        found["its mask is empty"] = ~m.any(1)
        found["its mask covers the whole image"] = m.all(1)
    return found


def undefined_scores(name: str, scores: torch.Tensor, degenerate: dict[str, torch.Tensor], *,
                     ranks: bool, masked: bool, stacklevel: int = 2) -> torch.Tensor:
    """``scores`` with NaN where they are undefined, and a :class:`MetricWarning` naming
    ``name``, the images and why: non-finite scores; for a metric that ``ranks`` pixels
    by relevance, images with a constant map; for a ``masked`` metric, empty masks.
    ``stacklevel``: the warning's, as :func:`warnings.warn` counts it from here."""
    if scores.ndim == 0 or len(scores) != len(next(iter(degenerate.values()))):
        return scores
    rows = scores.reshape(len(scores), -1)
    undefined = ~torch.isfinite(rows).all(1)
    forced = torch.zeros_like(undefined)
    if ranks:
        forced |= degenerate["its map is constant"]
    if masked and "its mask is empty" in degenerate:
        forced |= degenerate["its mask is empty"]
    undefined = undefined | forced
    if not bool(undefined.any()):
        return scores
    scores = torch.where(undefined.view(-1, *([1] * (scores.ndim - 1))),
                         torch.full_like(scores, float("nan")), scores)
    images = undefined.nonzero().flatten().tolist()
    reasons = [f"{why} ({', '.join(map(str, hit.nonzero().flatten().tolist()))})"
               for why, hit in degenerate.items()
               if bool((hit & undefined).any()) and (masked or "mask" not in why)]
    why = "; ".join(reasons) if reasons else "see docs/metrics.md, 'Undefined scores'"
    shown = ", ".join(map(str, images[:10])) + (f" and {len(images) - 10} more" if len(images) > 10 else "")
    warnings.warn(MetricWarning(f"metric {name!r} is undefined (NaN) for image(s) {shown}: {why}"),
                  stacklevel=stacklevel)
    return scores


def run_metric(spec: Any, data: Any, options: dict[str, Any]) -> Any:
    """``spec``'s metric on ``data`` (a :class:`~attribkit.evaluation.base.MetricInput`)
    with bound ``options``, its undefined scores NaN with a :class:`MetricWarning`
    (:func:`undefined_scores`): the one way ``ak.evaluate`` runs a metric, for any other
    caller that wants the same values."""
    from attribkit.evaluation.plugin import RANKING

    result = spec.load()(data, **options)
    degenerate = degenerate_images(data.relevance, data.inputs, data.masks)
    result.scores = undefined_scores(spec.name, result.scores, degenerate, ranks=spec.name in RANKING,
                                     masked="ground_truth" in spec.needs, stacklevel=4)
    return result
