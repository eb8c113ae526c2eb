"""A user's model (``--model SPEC [--weights ...]``) on a user's folder of images (``--data DIR``).

No ground truth: each image is explained for the model's top class, and the
metrics that need evidence masks are left out. Without a folder the images are
random, so only the speed columns mean something.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attribkit.bench.tasks.base import Log, Task, TaskData

SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class FolderTask(Task):
    """``spec`` (``torchvision:resnet50``, ``pkg.mod:factory``; see :func:`attribkit.models.load_model`)
    with ``weights`` on the images under ``folder`` (``None``: random 224x224 images)."""

    spec: str
    weights: str | None = None
    folder: str | None = None
    evidence: str = ""

    @property
    def name(self) -> str:  # type: ignore[override]
        """The model's spec."""
        return self.spec

    @property
    def description(self) -> str:  # type: ignore[override]
        """What the task explains."""
        return f"{self.spec} on {self.folder or 'random images'}"

    def model(self, seed: int = 0, log: Log = print) -> nn.Module:
        """The user's model, loaded from its spec and weights (``seed`` is not used)."""
        from attribkit.models import load_model

        if self.folder is None:
            log("no --data: random images, so only speed is meaningful")
        return load_model(self.spec, self.weights)

    def data(self, n: int, seed: int = 0) -> TaskData:
        """The first ``n`` images under the folder (sorted paths), or ``n`` random ones
        drawn from ``seed``; no labels and no masks."""
        if self.folder is None:
            return TaskData(torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(seed)))
        from attribkit.images import load_image, to_input

        files = sorted(p for p in Path(self.folder).rglob("*") if p.suffix.lower() in SUFFIXES)[:n]
        if not files:
            raise FileNotFoundError(f"no .png/.jpg images under {self.folder}")
        return TaskData(torch.cat([to_input(load_image(p)) for p in files]))

    def identity(self) -> dict[str, Any]:
        """The model, its weights and the folder."""
        return {"model": self.spec, "weights": self.weights, "data": self.folder}
