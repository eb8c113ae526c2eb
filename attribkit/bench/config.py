"""``BenchConfig``: what one ``attribkit bench`` run measures, and its resume key."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

from attribkit.bench.profiles import profile

if TYPE_CHECKING:
    from attribkit.bench.tasks.base import Task
    from attribkit.registry import MethodSpec


@dataclasses.dataclass
class BenchConfig:
    """What to benchmark; see ``attribkit bench --help``. The subject is a task by name
    (``task``, from :mod:`attribkit.bench.tasks`), an older spelling of one (``model`` /
    ``data``), or a user's ``model`` (with ``weights``) on a folder of images (``data``)."""

    out: Path
    profile: str = "quick"
    task: str | None = None
    model: str | None = None
    weights: str | None = None
    data: str | None = None
    methods: Sequence[str] | None = None
    metrics: Sequence[str] | None = None
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    n_images: int | None = None
    batch_size: int = 64
    seed: int = 0
    method_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    peers: bool = True  # time the peer libraries beside each method (the demo leaves them out)

    def options_for(self, spec: MethodSpec) -> dict[str, Any]:
        """The options given for a method (under its name or an alias)."""
        return {k: v for label in spec.labels for k, v in self.method_options.get(label, {}).items()}

    def settings(self) -> dict[str, Any]:
        """The profile's settings, with ``n_images`` when given."""
        s = profile(self.profile)
        if self.n_images is not None:
            s["n_images"] = self.n_images
        return s

    def subject_task(self) -> Task:
        """The task this run explains (:func:`attribkit.bench.tasks.resolve_task`)."""
        from attribkit.bench.tasks import resolve_task

        return resolve_task(self.task, model=self.model, data=self.data, weights=self.weights)

    def run_key(self) -> str:
        """Results of runs with the same key are interchangeable (resume): the settings
        and the task's identity, so every spelling of one task shares its results."""
        fields = {k: v for k, v in dataclasses.asdict(self).items()
                  if k not in ("out", "methods", "metrics", "task", "model", "weights", "data")}
        if self.peers:  # the default stays out of the key: results written before the field resume
            del fields["peers"]
        fields["subject"] = self.subject_task().identity()
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def autocast(self) -> ContextManager[Any]:
        """bf16 autocast on the run's device with ``amp``, else nothing."""
        if not self.amp:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
