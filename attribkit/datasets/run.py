"""``explain_dataset``: a whole dataset through ``explain`` into a resumable store.

One pass over the data computes, per batch, every method's maps (the same
calls as :func:`attribkit.explain` on that batch), the model's prediction, and
the chosen metrics' per-image scores, and queues the batch for the
background writer (:mod:`attribkit.datasets.writer`), which writes it as one
chunk of each array and then the batch's completion marker
(:mod:`attribkit.datasets.store`). A DataLoader's workers decode the next
batches meanwhile. Running the same call again continues from the batches
without a marker; under ``torchrun`` each rank computes its share of them
(:mod:`attribkit.datasets.sharding`).
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribkit import __version__
from attribkit.datasets import items as I
from attribkit.datasets.encoding import check_compressor, check_dtype, codecs, stored_maps
from attribkit.datasets.settings import (
    as_json,
    data_fingerprint,
    describe_target,
    metric_settings,
    model_fingerprint,
    split_layers,
    split_options,
)
from attribkit.datasets.sharding import Processes, joined, share_of
from attribkit.datasets.store import AttributionStore, create_store, open_store, open_writable, resume_store
from attribkit.datasets.writer import BatchWriter
from attribkit.errors import InputError, InvalidOptionError, TargetError
from attribkit.registry import MethodSpec, MetricSpec

METRIC_NEEDS = {"forward", "ground_truth", "model", "method"}


@dataclasses.dataclass
class Plan:
    """Everything a process needs to compute batches (the same on every rank)."""

    model: Any
    dataset: Any
    specs: list[MethodSpec]
    options: dict[str, dict[str, Any]]
    layers: dict[str, Any]
    metrics: list[MetricSpec]
    metric_options: dict[str, dict[str, Any]]
    target: Any
    batch_size: int
    num_workers: int
    ids: np.ndarray
    device: torch.device
    strict: bool
    dtype: str = "float32"
    compressor: str = "none"
    has_labels: bool = False
    predicts: bool = False


def explain_dataset(model: Any, data: Any, methods: str | Sequence[str], out: str | Path, target: Any = None,
                    layer: Any = None, batch_size: int | None = None, num_workers: int | None = None,
                    metrics: Sequence[str] = (), progress: bool = True, *, strict: bool = False,
                    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
                    dtype: Any = "float32", compressor: str | None = None,
                    **method_options: Any) -> AttributionStore:
    """Explain every item of ``data`` with each of ``methods`` and store the maps at ``out``.

    Args:
        model: the ``torch.nn.Module`` (eval mode is used for the call; the model is
            left as it was). Its device is where batches are computed.
        data: a map-style torch ``Dataset`` whose items are an image tensor,
            ``(image,)``, ``(image, label)`` or ``(image, label, mask)``, or a
            ``DataLoader`` over one (its batch size and workers are used unless
            given; it must not shuffle). :func:`attribkit.image_folder` makes one of
            a folder; an item may be an :class:`~attribkit.datasets.folder.Unreadable`.
        methods: method names or aliases (``attribkit methods``).
        out: the store's path (a zarr v3 group, ``RUN.zarr``); an existing store of
            the same run is resumed, one of another run refused.
        target: ``None`` (each image's top class), ``"label"`` (the data's label),
            an int, one int per item, or a callable ``scores -> (B,)``, as in ``explain``.
        layer: for layer methods: a module, a dotted name, ``None`` (auto), or a
            ``{method: layer}`` mapping.
        batch_size: images per batch and per chunk of the store (default 64).
        num_workers: DataLoader worker processes that decode items (default 0).
        metrics: metric names (``attribkit metrics``), scored per image on each
            method's maps in the same pass; ``ground_truth`` metrics need masks.
        progress: a tqdm bar on stderr (images done of the total, images/s, ETA).
        strict: unreadable items (and, for a folder, files that are not images)
            raise instead of being stored as skipped rows.
        metric_options: ``{metric: {option: value}}``.
        dtype: the stored maps' dtype, ``"float32"`` or ``"float16"`` (half the
            bytes; a finite value beyond float16's range raises
            :class:`~attribkit.datasets.encoding.Float16RangeError` rather than
            being stored as ``inf``). ``"bfloat16"`` is refused: zarr cannot store it.
        compressor: the maps' lossless compressor: ``None``/``"none"`` (default),
            ``"zstd"``, ``"gzip"``, ``"blosc-lz4"``, ``"blosc-lz4hc"``, ``"blosc-zstd"``,
            ``"blosc-zlib"`` (zarr v3 codecs; :mod:`attribkit.datasets.encoding`).
        **method_options: options for every method that has them, or
            ``METHOD={...}`` for one method's own.

    Returns the :class:`~attribkit.datasets.store.AttributionStore` (also
    :func:`~attribkit.datasets.store.open_store` of ``out``): ``store[method]`` has
    the values ``explain`` gives on the stacked images, as ``dtype`` (metrics
    are scored on the float32 maps, before they are stored).
    """
    stored = check_dtype(dtype), check_compressor(compressor)  # before any work
    plan = _plan(model, data, methods, target, layer, batch_size, num_workers, metrics, strict,
                 metric_options, method_options)
    plan.dtype, plan.compressor = stored
    out = Path(out)
    with joined(plan.device) as processes:
        store = _open_for(plan, out, processes)
        pending = processes.from_leader([int(b) for b in np.flatnonzero(~store.batches_done)]
                                        if processes.leader else None)
        mine = share_of(pending, processes)
        started = time.perf_counter()
        failure: BaseException | None = None
        computed = 0
        try:
            computed = _compute(plan, store, mine, processes, progress)
        except BaseException as exc:  # noqa: BLE001 - every rank must reach the gather below
            failure = exc
        reports = processes.gather(None if failure is None else f"{type(failure).__name__}: {failure}")
        if isinstance(failure, KeyboardInterrupt):
            stored = int(open_store(out).done.sum())
            raise KeyboardInterrupt(f"interrupted: {stored} of {len(plan.dataset)} images are stored in {out}; "
                                    "the same call or command resumes from there") from None
        if failure is not None:
            raise failure
        bad = [(rank, report) for rank, report in enumerate(reports) if report is not None]
        if bad:
            raise RuntimeError(f"rank {bad[0][0]} of the run failed: {bad[0][1]}")
        counts = processes.gather(computed)
        if processes.leader:
            store.add_run({"images": int(sum(counts)), "seconds": round(time.perf_counter() - started, 3),
                           "processes": processes.world, "device": str(plan.device),
                           "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    return open_store(out)


# ------------------------------------------------------------------ planning


def _plan(model: Any, data: Any, methods: str | Sequence[str], target: Any, layer: Any, batch_size: Any,
          num_workers: Any, metrics: Sequence[str], strict: bool,
          metric_options: Mapping[str, Mapping[str, Any]] | None, method_options: Mapping[str, Any]) -> Plan:
    from attribkit.api import get_method, get_metric

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"explain_dataset takes a torch.nn.Module, got {type(model).__name__}")
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InvalidOptionError("methods is empty: name at least one method (attribkit methods lists them)")
    specs = [get_method(name) for name in names]
    seen = [s.name for s in specs]
    if len(set(seen)) != len(seen):
        raise InvalidOptionError(f"a method is named twice in methods: {', '.join(names)}")
    metric_specs = [get_metric(name) for name in metrics]
    for spec in metric_specs:
        unmet = set(spec.needs) - METRIC_NEEDS
        if unmet:
            raise InvalidOptionError(f"metric {spec.name!r} needs {', '.join(sorted(unmet))}, which "
                                     "explain_dataset cannot give it")
    if metric_specs and callable(target):
        raise TargetError("metrics score the explained class, and a callable target has none; "
                          "pass target=None, 'label' or class indices")
    dataset, batch_size, num_workers = I.unwrap(data, batch_size, num_workers)
    ids, _, skipped = I.item_ids(dataset)
    if strict and skipped:
        raise InputError(f"{len(skipped)} files of the folder are not images (strict): "
                         + "; ".join(f"{path}: {why}" for path, why in skipped[:5]))
    if isinstance(target, str) and target != "label":
        raise TargetError(f"target {target!r}: a string target can only be 'label' (the data's label)")
    if target is not None and not callable(target) and not isinstance(target, (str, int, np.integer)):
        target = np.asarray(target)
        if target.shape != (len(dataset),):
            raise TargetError(f"target holds {target.size} classes for {len(dataset)} items; "
                              "pass one per item, an int, 'label', None or a callable")
    parameter = next(model.parameters(), None)
    return Plan(model=model, dataset=dataset, specs=specs, options=split_options(specs, method_options),
                layers=split_layers(specs, layer), metrics=metric_specs,
                metric_options=metric_settings(metric_specs, metric_options), target=target,
                batch_size=batch_size, num_workers=num_workers, ids=ids,
                device=parameter.device if parameter is not None else torch.device("cpu"), strict=strict)


def _open_for(plan: Plan, out: Path, processes: Processes) -> AttributionStore:
    """Rank 0 resumes or creates the store (after a probe of one image), then every
    rank opens it; a problem found by rank 0 is raised on every rank."""
    if processes.leader:
        try:
            outcome: Any = _probe_and_create(plan, out)
        except Exception as exc:  # noqa: BLE001 - raised on every rank by from_leader
            outcome = exc
    else:
        outcome = None
    plan.has_labels, plan.predicts, resolved = processes.from_leader(outcome)
    # later batches name the layer the probe resolved: no auto-pick probe forward per batch
    plan.layers.update({name: layer for name, layer in resolved.items() if name in plan.layers})
    return open_writable(out)


def _probe_and_create(plan: Plan, out: Path) -> tuple[bool, bool, dict[str, str | None]]:
    """Check the run on the first readable item (the same errors as ``explain``),
    then resume the store at ``out`` or create it. Returns ``(has_labels, predicts,
    the layer each method resolved)``."""
    index, item = I.first_readable(plan.dataset)
    if isinstance(plan.target, str) and item.label is None:
        raise TargetError("target='label' explains each item's label, but the data's items have none "
                          "(items are (image, label) for labels)")
    if any("ground_truth" in m.needs for m in plan.metrics) and item.mask is None:
        names = [m.name for m in plan.metrics if "ground_truth" in m.needs]
        raise InvalidOptionError(f"metrics {', '.join(names)} need evidence masks, and the data's items "
                                 "have none (items are (image, label, mask) for masks)")
    settings = as_json({
        "model": model_fingerprint(plan.model),
        "data": data_fingerprint(plan.dataset, plan.ids),
        "methods": [s.name for s in plan.specs],
        "options": plan.options,
        "layers": {name: _layer_setting(plan.model, layer) for name, layer in plan.layers.items()},
        "target": describe_target(plan.target, len(plan.dataset)),
        "batch_size": plan.batch_size,
        "metrics": [m.name for m in plan.metrics],
        "metric_options": plan.metric_options,
        "image_shape": list(item.image.shape),
        "dtype": plan.dtype,
        "compressor": plan.compressor,
        "attribkit": __version__,
    })
    if (out / "zarr.json").is_file():
        store = resume_store(out, settings)
        return store.labels is not None, store.predictions is not None, store.layers
    x = item.image[None].to(plan.device)
    probe_target = _batch_target(plan, np.array([index]), None if item.label is None else
                                 np.array([item.label]))
    layers, rows = {}, {}
    for spec in plan.specs:
        result = _explain(plan, spec, x, probe_target)
        stored_maps(result.values, plan.dtype, spec.name, (index, index))  # float16's range, before any work
        layers[spec.name] = result.layer
        rows[spec.name] = tuple(result.values.shape[1:])
    with torch.no_grad():
        scores = _call_model(plan.model, x)
    predicts = isinstance(scores, torch.Tensor) and scores.ndim == 2
    columns: dict[str, tuple[tuple[int, ...], Any]] = {
        "ids": ((), plan.ids.dtype), "errors": ((), np.dtype(object))}
    if item.label is not None:
        columns["labels"] = ((), np.int64)
    if not callable(plan.target):
        columns["targets"] = ((), np.int64)
    if predicts:
        columns.update({"predictions": ((), np.int64), "scores": ((), np.float32)})
    for spec in plan.specs:
        columns[f"maps/{spec.name}"] = (rows[spec.name], np.dtype(plan.dtype))
        for metric in plan.metrics:
            columns[f"metrics/{spec.name}/{metric.name}"] = ((), np.float32)
    _, classes, skipped = I.item_ids(plan.dataset)
    meta = {"settings": settings, "layers": layers, "classes": classes,
            "skipped_files": [list(pair) for pair in skipped], "runs": []}
    if isinstance(plan.dataset, I.ImageFolder):  # where the pictures are, for attribkit report
        meta["images"] = {"root": str(plan.dataset.root.resolve()), "crop": plan.dataset.crop}
    create_store(out, meta, columns, len(plan.dataset), plan.batch_size, map_codecs=codecs(plan.compressor))
    return item.label is not None, predicts, layers


def _layer_setting(model: torch.nn.Module, layer: Any) -> Any:
    if isinstance(layer, torch.nn.Module):
        from attribkit.torch.layers import layer_name

        return layer_name(model, layer)
    return layer


# ------------------------------------------------------------------ computing


def _compute(plan: Plan, store: AttributionStore, mine: list[int], processes: Processes,
             show: bool) -> int:
    """Compute and write this process's batches; returns the images computed."""
    from attribkit.progress import quiet

    n = len(plan.dataset)
    images = sum(min(n, (b + 1) * plan.batch_size) - b * plan.batch_size for b in mine)
    if processes.world == 1:
        bar = _bar(total=n, initial=n - images, desc="explain_dataset", show=show)
    else:
        bar = _bar(total=images, initial=0, desc=f"rank 0 of {processes.world}",
                   show=show and processes.leader)
    loader = I.batches(plan.dataset, mine, plan.batch_size, plan.num_workers,
                       pin_memory=plan.device.type == "cuda")
    done = 0
    with bar, BatchWriter(store) as writer, quiet():
        for batch in loader:
            if batch.problem:
                raise InputError(batch.problem)
            if plan.strict and not batch.readable.all():
                row = int(np.flatnonzero(~batch.readable)[0])
                raise InputError(f"item {plan.ids[batch.start + row]} cannot be read (strict): "
                                 f"{batch.errors[row]}")
            writer.put(batch.number, batch.start, _columns(plan, batch))
            done += batch.size
            bar.update(batch.size)
    return done


def _bar(*, total: int, initial: int, desc: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="img", file=sys.stderr, disable=not show,
                dynamic_ncols=True, smoothing=0.1)


def _columns(plan: Plan, batch: I.Batch) -> dict[str, np.ndarray]:
    """Every column's rows of ``batch``; unreadable rows hold the fill values."""
    rows = slice(batch.start, batch.start + batch.size)
    ok = batch.readable
    columns: dict[str, np.ndarray] = {"ids": plan.ids[rows], "errors": np.array(batch.errors, dtype=object)}
    if plan.has_labels:
        columns["labels"] = batch.labels if batch.labels is not None else np.full(batch.size, -1, np.int64)
    if batch.images is None:  # nothing readable: the fill values stand
        return columns
    x = batch.images.to(plan.device, non_blocking=True)
    labels = None if batch.labels is None else batch.labels[ok]
    target = _batch_target(plan, np.arange(rows.start, rows.stop)[ok], labels)
    targets = predictions = None
    for spec in plan.specs:
        result = _explain(plan, spec, x, target)
        values = stored_maps(result.values, plan.dtype, spec.name, (rows.start, rows.stop - 1))
        columns[f"maps/{spec.name}"] = _spread(values, ok, np.nan)
        if targets is None and result.target is not None:
            targets = torch.as_tensor(result.target).long()
        if predictions is None:
            predictions = result.meta.get("predictions")
        for metric, scores in _metric_scores(plan, spec, x, result, targets, batch).items():
            columns[f"metrics/{spec.name}/{metric}"] = _spread(scores, ok, np.nan)
    if not callable(plan.target) and targets is not None:
        columns["targets"] = _spread(targets.numpy(), ok, -1)
    if plan.predicts:
        if predictions is None:
            with torch.no_grad():
                top = _call_model(plan.model, x).detach().float().max(dim=1)
            predictions = (top.indices.cpu(), top.values.cpu())
        columns["predictions"] = _spread(predictions[0].numpy().astype(np.int64), ok, -1)
        columns["scores"] = _spread(predictions[1].numpy().astype(np.float32), ok, np.nan)
    return columns


def _spread(values: np.ndarray, ok: np.ndarray, fill: Any) -> np.ndarray:
    """``values`` of the readable rows as all rows, ``fill`` in the others."""
    if ok.all():
        return values
    full = np.full((len(ok), *values.shape[1:]), fill, dtype=values.dtype)
    full[ok] = values
    return full


def _batch_target(plan: Plan, rows: np.ndarray, labels: np.ndarray | None) -> Any:
    """The target of the readable ``rows`` (their indices in the data)."""
    if plan.target is None or callable(plan.target) or isinstance(plan.target, (int, np.integer)):
        return plan.target
    if isinstance(plan.target, str):  # "label"
        if labels is None:
            raise TargetError("target='label', but a batch's items have no labels")
        return torch.as_tensor(labels, dtype=torch.long)
    return torch.as_tensor(plan.target[rows], dtype=torch.long)


def _explain(plan: Plan, spec: MethodSpec, x: torch.Tensor, target: Any) -> Any:
    from attribkit.api import explain

    kwargs = {"layer": plan.layers[spec.name]} if spec.name in plan.layers else {}
    return explain(plan.model, x, target, method=spec.name, **kwargs, **plan.options[spec.name])


def _call_model(model: torch.nn.Module, x: torch.Tensor) -> Any:
    from attribkit.torch.guard import model_guard

    with model_guard(model, exclusive=False):
        return model(x)


def _metric_scores(plan: Plan, spec: MethodSpec, x: torch.Tensor, result: Any, targets: torch.Tensor | None,
                   batch: I.Batch) -> dict[str, np.ndarray]:
    """Each metric's per-image scores of ``spec``'s maps on this batch."""
    if not plan.metrics:
        return {}
    from attribkit.evaluation.base import MetricInput
    from attribkit.evaluation.functional import pixel_relevance
    from attribkit.torch.guard import model_guard

    from attribkit.api import explain

    size = tuple(x.shape[-2:])
    kwargs = {"layer": result.layer} if spec.name in plan.layers else {}  # by name: also in a copy

    def explain_again(model: Any, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        values = explain(model, inputs, classes, method=spec.name, **kwargs, **plan.options[spec.name]).values
        return pixel_relevance(torch.as_tensor(values), size)

    data = MetricInput(predict=plan.model, inputs=x, relevance=pixel_relevance(torch.as_tensor(result.values), size),
                       targets=targets.to(x.device), masks=None if batch.masks is None else batch.masks.to(x.device),
                       model=plan.model, explain=explain_again, batch_size=max(256, len(x)))
    scores = {}
    with model_guard(plan.model, exclusive=False):
        for metric in plan.metrics:
            out = metric.load()(data, **plan.metric_options[metric.name])
            scores[metric.name] = out.scores.detach().float().cpu().numpy()
    return scores

