"""``explain_dataset``: a whole dataset through ``explain`` into a resumable store.

One pass over the data computes, per batch, every method's maps (the same
calls as :func:`attribkit.explain` on that batch), the model's prediction, and
the chosen metrics' per-image scores (:mod:`attribkit.datasets.compute`), and
queues the batch for the background writer (:mod:`attribkit.datasets.writer`),
which writes it as one chunk of each array, then the batch's record and
completion marker (:mod:`attribkit.datasets.store`). A DataLoader's workers
decode the next batches meanwhile. Running the same call again continues from
the batches without a marker, after checking the stored ones
(:mod:`attribkit.datasets.resume`); under ``torchrun`` each rank computes its
share of them (:mod:`attribkit.datasets.sharding`). One process writes a store
at a time (:mod:`attribkit.datasets.lock`).
"""

from __future__ import annotations

import datetime
import functools
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribkit import __version__
from attribkit.datasets import items as I
from attribkit.datasets import targets as T
from attribkit.datasets.compute import batch_columns, batch_target, call_model, explain_with
from attribkit.datasets.encoding import check_compressor, check_dtype, codecs, stored_maps
from attribkit.datasets.fingerprint import item_digests
from attribkit.datasets.lock import StoreLock
from attribkit.datasets.planning import Plan, layer_setting, make_plan
from attribkit.datasets.resume import changed_item, checked_batches, repair
from attribkit.datasets.settings import as_json, data_fingerprint, describe_target, model_fingerprint
from attribkit.datasets.sharding import Processes, joined, share_of
from attribkit.datasets.store import AttributionStore, create_store, open_store, open_writable, resume_store
from attribkit.datasets.writer import BatchWriter
from attribkit.errors import InputError, InvalidOptionError, StoreError, StoreWriteError, TargetError


def explain_dataset(model: Any, data: Any, methods: str | Sequence[str], out: str | Path, target: Any = None,
                    layer: Any = None, batch_size: int | None = None, num_workers: int | None = None,
                    metrics: Sequence[str] = (), progress: bool = True, *, strict: bool = False,
                    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
                    dtype: Any = "float32", compressor: str | None = None, verify_inputs: bool = True,
                    model_classes: Sequence[str] | None = None, **method_options: Any) -> AttributionStore:
    """Explain every item of ``data`` with each of ``methods`` and store the maps at ``out``.

    Args:
        model: the ``torch.nn.Module`` (eval mode is used for the call; the model is
            left as it was). Its device is where batches are computed.
        data: a map-style torch ``Dataset`` whose items are an image tensor,
            ``(image,)``, ``(image, label)`` or ``(image, label, mask)``, an image
            with its target (``(image, ak.Box(box, label))``, ``(image, box, label)``,
            ``(image, {"boxes": ..., "labels": ...})``, ``(image, ak.Region(cls, mask))``:
            one thing per item, :mod:`attribkit.datasets.targets`), or a
            ``DataLoader`` over one (its batch size and workers are used unless
            given; it must not shuffle). :func:`attribkit.image_folder` makes one of
            a folder; an item may be an :class:`~attribkit.datasets.folder.Unreadable`.
            With ``tokenizer=``, texts: items ``text``, ``(text, label)`` or ``(text,
            continuation)``, and the store a :class:`~attribkit.datasets.text_store.TextStore`
            (:mod:`attribkit.datasets.text_run`; ``max_length=`` truncates).
        methods: method names or aliases (``attribkit methods``).
        out: the store's path (a zarr v3 group, ``RUN.zarr``); an existing store of
            the same run is resumed, one of another run refused.
        target: ``None`` (each image's top class), ``"label"`` (the data's label),
            an int, one int per item, or a callable ``scores -> (B,)``, as in ``explain``;
            or ``ak.per_item(fn)``: ``fn(item)`` gives each item's ``Box`` or ``Region``.
            The store then keeps each item's box (``boxes``) or region mask
            (``regions``, at most 64 px a side) for the report.
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
        verify_inputs: when resuming, read the stored part of the data again and refuse
            it (:class:`~attribkit.errors.StoreError` naming the first item) if an
            item differs from the one its batch was computed from; ``False`` skips this
            pass for very large data.
        model_classes: the names of the model's outputs (e.g. torchvision's
            ``weights.meta["categories"]``), recorded for the report: it names the
            predictions with them and compares the labels' names with them.
        **method_options: options for every method that has them, or
            ``METHOD={...}`` for one method's own.

    Returns the :class:`~attribkit.datasets.store.AttributionStore` (also
    :func:`~attribkit.datasets.store.open_store` of ``out``): ``store[method]`` has
    the values ``explain`` gives on the stacked images, as ``dtype`` (metrics
    are scored on the float32 maps, before they are stored). Another process writing
    ``out`` is refused (:mod:`attribkit.datasets.lock`); a failed write (a full disk) is a
    :class:`~attribkit.errors.StoreWriteError`; an interrupted or failed call still adds
    its run record (``status``).
    """
    stored = check_dtype(dtype), check_compressor(compressor)  # before any work
    if not isinstance(verify_inputs, bool):
        raise InvalidOptionError(f"verify_inputs is True or False, got {verify_inputs!r}")
    from attribkit.datasets.text_run import is_text_data, make_text_plan

    if is_text_data(data, method_options):  # texts with tokenizer=: attribkit.datasets.text_run
        plan = make_text_plan(model, data, methods, target, layer, batch_size, num_workers, metrics, strict,
                              method_options)
    else:
        plan = make_plan(model, data, methods, target, layer, batch_size, num_workers, metrics, strict,
                         metric_options, method_options)
    plan.dtype, plan.compressor = stored
    plan.verify_inputs = verify_inputs
    plan.model_classes = [str(n) for n in model_classes] if model_classes is not None else None
    out = Path(out)
    lock = StoreLock(out)  # taken by rank 0 only (_open_for)
    try:
        with joined(plan.device) as processes:
            _run(plan, out, processes, lock, progress)
    finally:
        lock.release()
    return open_store(out)


def _run(plan: Plan, out: Path, processes: Processes, lock: StoreLock, progress: bool) -> None:
    store, repaired = _open_for(plan, out, processes, lock)
    before = store.batches_done if processes.leader else np.zeros(0, dtype=bool)  # read once: one file a batch
    pending, checked = processes.from_leader(
        ([int(b) for b in np.flatnonzero(~before)], checked_batches(before, store.records()))
        if processes.leader else None)
    if plan.verify_inputs:
        _check_inputs(plan, store, share_of(checked, processes), processes, out, progress)
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        _compute(plan, store, share_of(pending, processes), processes, progress)
    except BaseException as exc:  # noqa: BLE001 - every rank must reach the gather below
        failure = exc
    reports = processes.gather(None if failure is None else f"{type(failure).__name__}: {failure}")
    bad = [(rank, report) for rank, report in enumerate(reports) if report is not None]
    if processes.leader:
        _add_record(plan, store, before, started, processes, repaired, bad, failure)
    if isinstance(failure, KeyboardInterrupt):
        raise KeyboardInterrupt(f"interrupted: {_stored(out)} of {len(plan.dataset)} images are stored in "
                                f"{out}; the same call or command resumes from there") from None
    if isinstance(failure, StoreWriteError):
        raise StoreWriteError(f"{failure}; {_stored(out)} of {len(plan.dataset)} images are stored in {out}, "
                              "and the same call or command resumes from there") from failure.__cause__
    if failure is not None:
        raise failure
    if bad:
        raise RuntimeError(f"rank {bad[0][0]} of the run failed: {bad[0][1]}")


def _stored(out: Path) -> int:
    return int(open_store(out).done.sum())


def _add_record(plan: Plan, store: AttributionStore, before: np.ndarray, started: float, processes: Processes,
                repaired: list[int], bad: list[tuple[int, str]], failure: BaseException | None) -> None:
    """Append this call's run record (rank 0), whether it finished or not: the images it
    stored, its time, and its ``status`` (``finished``, ``interrupted`` or ``failed``)."""
    try:
        now = open_store(out := store.path).batches_done
        n, size = len(plan.dataset), plan.batch_size
        images = sum(min(n, (b + 1) * size) - b * size for b in np.flatnonzero(now & ~before))
        record: dict[str, Any] = {
            "images": int(images), "seconds": round(time.perf_counter() - started, 3),
            "processes": processes.world, "device": str(plan.device),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "status": "finished"}
        if any(report.startswith("KeyboardInterrupt") for _, report in bad):
            record["status"] = "interrupted"
        elif bad:
            record.update(status="failed", error=bad[0][1][:500])
        if repaired:
            record["recomputed"] = repaired
        store.add_run(record)
    except Exception:  # noqa: BLE001 - a store that cannot be written (a full disk): the failure wins
        if failure is None and not bad:
            raise
        print(f"attribkit: the run record could not be written to {out}", file=sys.stderr)


def _check_inputs(plan: Plan, store: AttributionStore, mine: list[int], processes: Processes, out: Path,
                  show: bool) -> None:
    """Compare the items of this rank's stored batches with their recorded digests; a
    changed item (found by any rank) is a :class:`StoreError` on every rank."""
    n = len(plan.dataset)
    images = sum(min(n, (b + 1) * plan.batch_size) - b * plan.batch_size for b in mine)
    bar = _bar(total=images, initial=0, desc="checking stored items", show=show and processes.leader and images > 0)
    try:
        with bar:
            found: Any = changed_item(plan, store, mine, out, bar)
    except Exception as exc:  # noqa: BLE001 - every rank must reach the gather below
        found = exc
    reports = processes.gather(found if not isinstance(found, Exception) else f"{type(found).__name__}: {found}")
    if isinstance(found, Exception):
        raise found
    changed = [report for report in reports if report is not None]
    if changed:
        raise StoreError(changed[0])


# ------------------------------------------------------------------ the store


def _open_for(plan: Plan, out: Path, processes: Processes, lock: StoreLock) -> tuple[AttributionStore, list[int]]:
    """Rank 0 takes the store's lock, then resumes the store (computing damaged batches
    again) or creates it (after a probe of one image); then every rank opens it. A
    problem found by rank 0 is raised on every rank. Returns the store and the
    batches found damaged."""
    if processes.leader:
        try:
            lock.acquire()
            outcome: Any = (plan.text.probe_and_create if plan.text else _probe_and_create)(plan, out)
        except Exception as exc:  # noqa: BLE001 - raised on every rank by from_leader
            outcome = exc
    else:
        outcome = None
    plan.has_labels, plan.predicts, resolved, repaired = processes.from_leader(outcome)
    # later batches name the layer the probe resolved: no auto-pick probe forward per batch
    plan.layers.update({name: layer for name, layer in resolved.items() if name in plan.layers})
    store = open_writable(out)
    plan.target_kind = "box" if store.has("boxes") else "region" if store.has("regions") else None
    if plan.text is not None:
        plan.text.kind = store.meta["text"]["kind"]
    return store, repaired


def _probe_and_create(plan: Plan, out: Path) -> tuple[bool, bool, dict[str, str | None], list[int]]:
    """Check the run on the first readable item (the same errors as ``explain``),
    then resume the store at ``out`` or create it. Returns ``(has_labels, predicts,
    the layer each method resolved, the stored batches found damaged)``."""
    index, item = I.first_readable(plan.dataset, per_item=plan.target if isinstance(plan.target, T.PerItem) else None)
    if item.target is not None and plan.metrics:
        raise InvalidOptionError(T.no_metrics_with_item_targets())
    if item.target is not None and not isinstance(plan.target, T.PerItem) and plan.target is not None:
        raise TargetError(f"the data's items carry their targets ({item.target.kind}es), and target="
                          f"{plan.target!r} was given too: pass target=None to explain each item's own, or "
                          "ak.per_item(fn) to make them from the item")
    if isinstance(plan.target, T.PerItem) and item.target is None:
        raise TargetError(f"{plan.target!r} gave no target for item {index}")
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
        "layers": {name: layer_setting(plan.model, layer) for name, layer in plan.layers.items()},
        "target": T.target_setting(plan.target, item) or describe_target(plan.target, len(plan.dataset)),
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
        return store.has("labels"), store.has("predictions"), store.layers, repair(store)
    x = item.image[None].to(plan.device)
    probe_target = T.batch_target([item.target], 0) if item.target is not None else \
        batch_target(plan, np.array([index]), None if item.label is None else np.array([item.label]))
    layers, rows = {}, {}
    for spec in plan.specs:
        result = explain_with(plan, spec, x, probe_target)
        stored_maps(result.values, plan.dtype, spec.name, (index, index))  # float16's range, before any work
        layers[spec.name] = result.layer
        rows[spec.name] = tuple(result.values.shape[1:])
    with torch.no_grad():
        scores = call_model(plan.model, x)
    predicts = isinstance(scores, torch.Tensor) and scores.ndim == 2
    columns: dict[str, tuple[tuple[int, ...], Any]] = {
        "ids": ((), plan.ids.dtype), "errors": ((), np.dtype(object))}
    if item.label is not None:
        columns["labels"] = ((), np.int64)
    if not callable(plan.target):
        columns["targets"] = ((), np.int64)
    if predicts:
        columns.update({"predictions": ((), np.int64), "scores": ((), np.float32)})
    if item.target is not None:  # what the report draws (attribkit.datasets.targets)
        columns["boxes" if item.target.kind == "box" else "regions"] = \
            ((4,), np.float32) if item.target.kind == "box" else (T.region_shape(item.image.shape), np.bool_)
    for spec in plan.specs:
        columns[f"maps/{spec.name}"] = (rows[spec.name], np.dtype(plan.dtype))
        for metric in plan.metrics:
            columns[f"metrics/{spec.name}/{metric.name}"] = ((), np.float32)
    _, classes, skipped = I.item_ids(plan.dataset)
    meta = {"settings": settings, "layers": layers, "classes": classes,
            "skipped_files": [list(pair) for pair in skipped], "runs": []}
    if plan.model_classes is not None:  # for the report (attribkit.report.classes)
        meta["model_classes"] = plan.model_classes
    if isinstance(plan.dataset, I.ImageFolder):  # where the pictures are, for attribkit report
        meta["images"] = {"root": str(plan.dataset.root.resolve()), "crop": plan.dataset.crop}
    create_store(out, meta, columns, len(plan.dataset), plan.batch_size, map_codecs=codecs(plan.compressor))
    return item.label is not None, predicts, layers, []


# ------------------------------------------------------------------ computing


def _compute(plan: Plan, store: AttributionStore, mine: list[int], processes: Processes, show: bool) -> None:
    """Compute and write this process's batches, each with its items' input digests."""
    from attribkit.progress import quiet

    n = len(plan.dataset)
    images = sum(min(n, (b + 1) * plan.batch_size) - b * plan.batch_size for b in mine)
    if processes.world == 1:
        bar = _bar(total=n, initial=n - images, desc="explain_dataset", show=show)
    else:
        bar = _bar(total=images, initial=0, desc=f"rank 0 of {processes.world}",
                   show=show and processes.leader)
    loader = plan.text.batches(plan, mine) if plan.text else I.batches(
        plan.dataset, mine, plan.batch_size, plan.num_workers, pin_memory=plan.device.type == "cuda",
        target=plan.target)
    columns, digests = (plan.text.columns, plan.text.digests) if plan.text else (batch_columns, item_digests)
    with bar, BatchWriter(store) as writer, quiet():
        for batch in loader:
            if batch.problem:
                raise InputError(batch.problem)
            if plan.strict and not batch.readable.all():
                row = int(np.flatnonzero(~batch.readable)[0])
                raise InputError(f"item {plan.ids[batch.start + row]} cannot be read (strict): "
                                 f"{batch.errors[row]}")
            writer.put(batch.number, batch.start, columns(plan, batch), inputs=functools.partial(digests, batch))
            bar.update(batch.size)


def _bar(*, total: int, initial: int, desc: str, show: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="img", file=sys.stderr, disable=not show,
                dynamic_ncols=True, smoothing=0.1)
