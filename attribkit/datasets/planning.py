"""The plan of a dataset run: the call's arguments checked and resolved once, before
any work, into what every process needs to compute its batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from attribkit.datasets import items as I
from attribkit.datasets.settings import metric_settings, split_layers, split_options
from attribkit.datasets.targets import PerItem, no_metrics_with_item_targets
from attribkit.errors import InputError, InvalidOptionError, TargetError
from attribkit.registry import MethodSpec, MetricSpec
from attribkit.targets.base import Target

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
    verify_inputs: bool = True
    model_classes: list[str] | None = None
    target_kind: str | None = None  # "box" / "region": the items' targets (attribkit.datasets.targets)
    text: Any = None  # a text run's TextSetup (attribkit.datasets.text_run)


def make_plan(model: Any, data: Any, methods: str | Sequence[str], target: Any, layer: Any, batch_size: Any,
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
    if metric_specs and isinstance(target, PerItem):
        raise InvalidOptionError(no_metrics_with_item_targets())
    dataset, batch_size, num_workers = I.unwrap(data, batch_size, num_workers)
    ids, _, skipped = I.item_ids(dataset)
    if strict and skipped:
        raise InputError(f"{len(skipped)} files of the folder are not images (strict): "
                         + "; ".join(f"{path}: {why}" for path, why in skipped[:5]))
    if isinstance(target, str) and target != "label":
        raise TargetError(f"target {target!r}: a string target can only be 'label' (the data's label)")
    if isinstance(target, Target):
        raise TargetError(f"explain_dataset's target is None, 'label', an int, one int per item, a callable "
                          f"or ak.per_item(fn); for the same {type(target).__name__} on every item pass "
                          f"target=ak.per_item(lambda item: {type(target).__name__}(...))")
    if target is not None and not callable(target) and not isinstance(target, (str, int, np.integer, PerItem)):
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

def layer_setting(model: torch.nn.Module, layer: Any) -> Any:
    if isinstance(layer, torch.nn.Module):
        from attribkit.torch.layers import layer_name

        return layer_name(model, layer)
    return layer
