"""One batch's values: every method's maps (the same calls as ``explain`` on the
batch), the explained classes, the model's prediction and the metrics' scores, as the
store's columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from attribkit.datasets import items as I
from attribkit.datasets import targets as T
from attribkit.datasets.encoding import stored_maps
from attribkit.datasets.planning import Plan
from attribkit.errors import InputError, TargetError
from attribkit.registry import MethodSpec


def batch_columns(plan: Plan, batch: I.Batch) -> dict[str, np.ndarray]:
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
    if (batch.target is None) != (plan.target_kind is None):
        raise InputError(f"the items of batch {batch.number} {'have no' if batch.target is None else 'have'} "
                         f"targets, the data's first item {'has' if plan.target_kind else 'has none'}: "
                         "a dataset's items all carry their target (a box or region) or none does")
    if batch.target is not None:
        target = batch.target
        for name, values in T.target_columns(target, plan.target_kind, tuple(x.shape)).items():
            columns[name] = spread(values, ok, np.nan if values.dtype.kind == "f" else False)
    else:
        target = batch_target(plan, np.arange(rows.start, rows.stop)[ok], labels)
    targets = predictions = None
    for spec in plan.specs:
        result = explain_with(plan, spec, x, target)
        values = stored_maps(result.values, plan.dtype, spec.name, (rows.start, rows.stop - 1))
        columns[f"maps/{spec.name}"] = spread(values, ok, np.nan)
        if targets is None and result.target is not None:
            targets = torch.as_tensor(result.target).long()
        if predictions is None:
            predictions = result.meta.get("predictions")
        for metric, scores in metric_scores(plan, spec, x, result, targets, batch).items():
            columns[f"metrics/{spec.name}/{metric}"] = spread(scores, ok, np.nan)
    if not callable(plan.target) and targets is not None:
        columns["targets"] = spread(targets.numpy(), ok, -1)
    if plan.predicts:
        if predictions is None:
            with torch.no_grad():
                top = call_model(plan.model, x).detach().float().max(dim=1)
            predictions = (top.indices.cpu(), top.values.cpu())
        columns["predictions"] = spread(predictions[0].numpy().astype(np.int64), ok, -1)
        columns["scores"] = spread(predictions[1].numpy().astype(np.float32), ok, np.nan)
    return columns


def spread(values: np.ndarray, ok: np.ndarray, fill: Any) -> np.ndarray:
    """``values`` of the readable rows as all rows, ``fill`` in the others."""
    if ok.all():
        return values
    full = np.full((len(ok), *values.shape[1:]), fill, dtype=values.dtype)
    full[ok] = values
    return full


def batch_target(plan: Plan, rows: np.ndarray, labels: np.ndarray | None) -> Any:
    """The target of the readable ``rows`` (their indices in the data)."""
    if plan.target is None or callable(plan.target) or isinstance(plan.target, (int, np.integer)):
        return plan.target
    if isinstance(plan.target, str):  # "label"
        if labels is None:
            raise TargetError("target='label', but a batch's items have no labels")
        return torch.as_tensor(labels, dtype=torch.long)
    return torch.as_tensor(plan.target[rows], dtype=torch.long)


def explain_with(plan: Plan, spec: MethodSpec, x: torch.Tensor, target: Any) -> Any:
    from attribkit.api import explain

    kwargs = {"layer": plan.layers[spec.name]} if spec.name in plan.layers else {}
    return explain(plan.model, x, target, method=spec.name, **kwargs, **plan.options[spec.name])


def call_model(model: torch.nn.Module, x: torch.Tensor) -> Any:
    from attribkit.torch.guard import model_guard

    with model_guard(model, exclusive=False):
        return model(x)


def metric_scores(plan: Plan, spec: MethodSpec, x: torch.Tensor, result: Any, targets: torch.Tensor | None,
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

