"""The subject of a bench run: a task's model and images on the run's device."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from attribkit.bench.config import BenchConfig


@dataclasses.dataclass
class Subject:
    """The model and data a run is about."""

    name: str
    model: torch.nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None
    class_names: Sequence[str] | None = None


def load_subject(config: BenchConfig, n_images: int, log: Callable[[str], None] = print) -> Subject:
    """The model and ``n_images`` images of the run's task (:meth:`BenchConfig.subject_task`),
    on the run's device and memory format; the images are explained for their labels, or
    for the model's top class when the task has none."""
    task = config.subject_task()
    model = task.model(config.seed, log).eval()
    data = task.data(n_images, config.seed)
    inputs, targets = data.inputs, data.labels
    if targets is None:
        with torch.no_grad():
            targets = torch.cat([model(inputs[i:i + 32]).argmax(1) for i in range(0, len(inputs), 32)])
    device = torch.device(config.device)
    model, inputs = model.to(device), inputs.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return Subject(task.name, model, inputs, targets.to(device), data.masks, data.class_names)


def default_layer(subject: Subject) -> Any:
    """The layer the CAM methods explain by default (the last spatial one), or None when
    the model has none."""
    from attribkit.torch.layers import resolve_layer

    try:
        return resolve_layer(subject.model, None, subject.inputs[:1])[0]
    except Exception:  # noqa: BLE001 - models without a spatial layer run no layer methods
        return None
