"""What a benchmark task is: data whose evidence is known, and the model that explains it."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A task's images and what is known about them.

    ``inputs`` ``(N, C, H, W)`` float; ``labels`` ``(N,)`` int64, the class each image
    is explained for (``None``: the model's top class); ``masks`` ``(N, H, W)`` bool,
    the evidence of each image (``None``: no ground truth, so the localisation metrics
    are left out); ``class_names`` when known; ``target``, for a model that is not a
    classifier, the target object each image is explained for (one entry per image: a
    segmentation network's ``ak.Region``, a detector's ``ak.Box``; ``labels`` are then
    its classes), which the methods explain and the metrics score; ``layer``, the dotted
    name of the layer the CAM methods explain (``None``: the automatic choice)."""

    inputs: torch.Tensor
    labels: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None
    target: Any = None
    layer: str | None = None

    @classmethod
    def from_arrays(cls, data: Any) -> TaskData:
        """From a generator's NumPy result (``images``, ``labels``, ``masks``, ``class_names``)."""
        return cls(torch.from_numpy(data.images), torch.from_numpy(data.labels), torch.from_numpy(data.masks),
                   tuple(data.class_names))


class Task(abc.ABC):
    """A benchmark task: :meth:`model` (trained, or loaded) and :meth:`data` for it."""

    name: str
    description: str
    evidence: str  # what its masks mark ("" when it has none)

    @abc.abstractmethod
    def model(self, seed: int = 0, log: Log = print) -> nn.Module:
        """The model to explain; a reference model is trained with ``seed`` (cached)."""

    @abc.abstractmethod
    def data(self, n: int, seed: int = 0) -> TaskData:
        """``n`` images to explain, drawn from ``seed`` where they are generated."""

    def identity(self) -> dict[str, Any]:
        """What identifies the task's results (for the resume key)."""
        return {"task": self.name}


@dataclasses.dataclass(frozen=True)
class ReferenceTask(Task):
    """Generated data with known evidence and a small model trained on it reproducibly.

    ``config`` is the reference model's training config (a
    :class:`~attribkit.bench.training.Recipe`; its seed is replaced by the run's),
    ``trained(config, log=...)`` gives the cached trained model and its record, and
    ``draw(config, n)`` gives ``n`` held-out images (drawn from ``config.seed + 20_000``,
    images that neither training nor testing the model saw)."""

    name: str
    description: str
    config: Any
    trained: Callable[..., tuple[nn.Module, dict]]
    draw: Callable[[Any, int], TaskData]
    evidence: str = "box"

    def model(self, seed: int = 0, log: Log = print) -> nn.Module:
        """The reference model trained with ``seed`` (from the cache once trained)."""
        model, record = self.trained(dataclasses.replace(self.config, seed=seed), log=log)
        log(f"{self.name}: reference model, test accuracy {record['test_accuracy']:.3f}, trained in "
            f"{record['train_seconds']:.0f} s ({record['path']})")
        return model

    def data(self, n: int, seed: int = 0) -> TaskData:
        """``n`` held-out images for the model trained with ``seed``."""
        return self.draw(dataclasses.replace(self.config, seed=seed), n)
