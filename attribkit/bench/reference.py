"""The reference model: a small CNN trained on the synthetic data, cached on disk.

``conv blocks -> global average pooling -> linear``, so every CAM method
applies. Trained with Adam on :func:`attribkit.bench.synthetic.make_dataset`;
the state dict is cached under ``$ATTRIBKIT_CACHE`` (default
``~/.cache/attribkit``) by a hash of everything that determines it, and
loaded with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attribkit.bench.synthetic import make_dataset

CACHE_VERSION = 1


def cache_dir() -> Path:
    """``$ATTRIBKIT_CACHE`` or ``~/.cache/attribkit``."""
    return Path(os.environ.get("ATTRIBKIT_CACHE") or Path.home() / ".cache" / "attribkit")


class ReferenceCNN(nn.Module):
    """Four conv blocks (BatchNorm, ReLU; two max-pools) -> GAP -> linear."""

    def __init__(self, classes: int = 6, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, width // 2), nn.MaxPool2d(2),
            *block(width // 2, width), nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights (and so the cache key)."""

    classes: int = 6
    size: int = 64
    n_train: int = 4000
    n_test: int = 1000
    epochs: int = 6
    batch: int = 64
    lr: float = 3e-3
    width: int = 32
    seed: int = 0
    spurious: bool = False

    def key(self) -> str:
        blob = json.dumps({**dataclasses.asdict(self), "v": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch: int,
          lr: float, seed: int, extra_loss=None, log=None) -> nn.Module:
    """Adam + one-cycle schedule with random flips; ``extra_loss(model, x, y, idx)``
    is added to the cross-entropy when given. Returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(images) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        total = 0.0
        for start in range(0, len(images), batch):
            idx = order[start:start + batch]
            x, y = images[idx], labels[idx]
            loss = F.cross_entropy(model(x), y)
            if extra_loss is not None:
                loss = loss + extra_loss(model, x, y, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().item() * len(idx)
        if log:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(images):.4f}")
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy, in eval mode."""
    model.eval()
    hits = sum(int((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
               for i in range(0, len(images), batch))
    return hits / len(images)


def reference_model(config: TrainConfig = TrainConfig(), *, log=None) -> tuple[nn.Module, dict]:
    """The trained reference model (from the cache when present) and its record
    (config, test accuracy, training seconds, cache path)."""
    torch.manual_seed(config.seed)
    model = ReferenceCNN(config.classes, config.width)
    path = cache_dir() / f"reference-{config.key()}.pt"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), json.loads(meta_path.read_text())
    data = make_dataset(config.n_train, size=config.size, classes=config.classes, seed=config.seed,
                        spurious=config.spurious)
    test = make_dataset(config.n_test, size=config.size, classes=config.classes,
                        seed=config.seed + 10_000)
    start = time.perf_counter()
    train(model, torch.from_numpy(data.images), torch.from_numpy(data.labels), epochs=config.epochs,
          batch=config.batch, lr=config.lr, seed=config.seed, log=log)
    record = {"config": dataclasses.asdict(config), "train_seconds": time.perf_counter() - start,
              "test_accuracy": accuracy(model, torch.from_numpy(test.images), torch.from_numpy(test.labels)),
              "path": str(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    meta_path.write_text(json.dumps(record, indent=2))
    return model, record
