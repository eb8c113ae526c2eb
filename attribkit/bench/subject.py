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
    targets: Any  # (N,) class indices, or a target object bound to the N images (ak.Region, ak.Box)
    masks: torch.Tensor | None
    class_names: Sequence[str] | None = None
    layer: str | None = None  # the task's layer for the CAM methods (None: the automatic one)

    def targets_of(self, n: int) -> Any:
        """The targets of the first ``n`` images, of the same kind as :attr:`targets`."""
        if isinstance(self.targets, torch.Tensor):
            return self.targets[:n]
        return self.targets.take(torch.arange(n))


def load_subject(config: BenchConfig, n_images: int, log: Callable[[str], None] = print) -> Subject:
    """The model and ``n_images`` images of the run's task (:meth:`BenchConfig.subject_task`),
    on the run's device and memory format; the images are explained for the task's target
    object where it has one, else for their labels, else for the model's top class."""
    task = config.subject_task()
    model = task.model(config.seed, log).eval()
    data = task.data(n_images, config.seed)
    inputs, targets = data.inputs, data.labels
    if data.target is not None:
        targets = data.target.bind(len(inputs))
    elif targets is None:
        with torch.no_grad():
            targets = torch.cat([model(inputs[i:i + 32]).argmax(1) for i in range(0, len(inputs), 32)])
    device = torch.device(config.device)
    model, inputs = model.to(device), inputs.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    if isinstance(targets, torch.Tensor):
        targets = targets.to(device)
    return Subject(task.name, model, inputs, targets, data.masks, data.class_names, data.layer)


def default_layer(subject: Subject) -> Any:
    """The layer the CAM methods explain by default: the task's, else the last spatial
    one (for a target object, on the path to its score), or None when the model has none."""
    from attribkit.torch.layers import resolve_layer
    from attribkit.torch.targets import ChunkTarget

    if subject.layer is not None:  # a task's name: an error if it is wrong
        return resolve_layer(subject.model, subject.layer, subject.inputs[:1])[0]
    target = None if isinstance(subject.targets, torch.Tensor) else ChunkTarget(subject.targets_of(1))
    try:
        return resolve_layer(subject.model, None, subject.inputs[:1], target)[0]
    except Exception:  # noqa: BLE001 - models without a spatial layer run no layer methods
        return None
