"""The reference model: a small CNN trained on the synthetic data, cached on disk.

``conv blocks -> global average pooling -> linear``, so every CAM method
applies. Trained with Adam on :func:`attribkit.bench.synthetic.make_dataset`
by :func:`fit`, reproducibly (see :func:`reproducible`); the state dict is
cached under ``$ATTRIBKIT_CACHE`` (default ``~/.cache/attribkit``) by a hash of
everything that determines it, and loaded with ``torch.load(...,
weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attribkit.bench.synthetic import make_dataset

CACHE_VERSION = 2  # bump whenever training changes, so stale cached weights are not reused
TRAIN_THREADS = 1  # intra-op threads while training: fixed, so the weights do not depend on the caller's


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
    epochs: int = 8
    batch: int = 64
    lr: float = 3e-3
    width: int = 32
    seed: int = 0
    spurious: bool = False

    def key(self) -> str:
        return config_key(self, CACHE_VERSION)


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch: int,
          lr: float, seed: int,
          extra_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          log: Callable[[str], None] | None = None) -> nn.Module:
    """Adam + one-cycle schedule, the batch order drawn from a generator seeded with
    ``seed`` (the model's initial weights are the caller's: see :func:`reproducible`);
    ``extra_loss(model, x, y, idx)`` is added to the cross-entropy when given.
    Returns the model in eval mode."""
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


@contextlib.contextmanager
def reproducible(seed: int, threads: int = TRAIN_THREADS) -> Iterator[None]:
    """Run the block with torch's global CPU generator seeded with ``seed``,
    ``torch.use_deterministic_algorithms(True)`` and ``threads`` intra-op
    threads; restore all three afterwards.

    The global generator draws the model's initial weights; it is seeded here,
    not left in whatever state earlier code put it, and the caller's state is
    restored, so training neither depends on nor disturbs the rest of the
    process. The thread count is fixed because CPU kernels split their sums by
    thread, and a different summation order gives different float results,
    which a training run amplifies. With these, one machine and torch build
    give bit-identical weights; other CPUs (other SIMD kernels) may not.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    caller_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_num_threads(caller_threads)


def fit(config: TrainConfig, *, log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """Train a reference model from scratch (no cache) and return it with its record
    (config, training seconds, test accuracy, threads).

    Everything is drawn from ``config.seed``: the training images
    (``make_dataset(seed=config.seed)``), the test images (``config.seed +
    10_000``), the initial weights and the batch order (``train(seed=...)``),
    all inside :func:`reproducible`.
    """
    data = make_dataset(config.n_train, size=config.size, classes=config.classes, seed=config.seed,
                        spurious=config.spurious)
    test = make_dataset(config.n_test, size=config.size, classes=config.classes,
                        seed=config.seed + 10_000)
    cl = torch.channels_last  # the faster layout for CPU convolutions; the saved weights are contiguous
    with reproducible(config.seed):
        model = ReferenceCNN(config.classes, config.width).to(memory_format=cl)
        start = time.perf_counter()
        train(model, torch.from_numpy(data.images).contiguous(memory_format=cl), torch.from_numpy(data.labels),
              epochs=config.epochs, batch=config.batch, lr=config.lr, seed=config.seed, log=log)
        seconds = time.perf_counter() - start
        model.to(memory_format=torch.contiguous_format)
        test_accuracy = accuracy(model, torch.from_numpy(test.images), torch.from_numpy(test.labels))
    return model, {"config": dataclasses.asdict(config), "train_seconds": seconds,
                   "test_accuracy": test_accuracy, "threads": TRAIN_THREADS}


def config_key(config: Any, version: int, **extra: Any) -> str:
    """The cache key of a frozen training config: a short SHA-256 of its fields, the
    cache ``version`` and any ``extra`` that the weights depend on (a library's version)."""
    blob = json.dumps({**dataclasses.asdict(config), "v": version, **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_model(name: str, build: Callable[[], nn.Module],
                 fit_model: Callable[[], tuple[nn.Module, dict]]) -> tuple[nn.Module, dict]:
    """A trained model cached as ``$ATTRIBKIT_CACHE/NAME.pt`` with its record in ``NAME.json``:
    loaded into ``build()`` when both files exist (built on a forked RNG, since the initial
    weights are overwritten), else trained by ``fit_model()`` and cached. Returns the model
    in eval mode and its record, with the cache ``path``."""
    path = cache_dir() / f"{name}.pt"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        with torch.random.fork_rng(devices=[]):
            model = build()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), json.loads(meta_path.read_text())
    model, record = fit_model()
    record["path"] = str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    meta_path.write_text(json.dumps(record, indent=2))
    return model.eval(), record


def reference_model(config: TrainConfig = TrainConfig(), *,
                    log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """The trained reference model (from the cache when present, else :func:`fit`)
    and its record (config, test accuracy, training seconds, threads, cache path)."""
    return cached_model(f"reference-{config.key()}", lambda: ReferenceCNN(config.classes, config.width),
                        lambda: fit(config, log=log))
