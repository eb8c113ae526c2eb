"""The one recipe that trains every reference model, reproducibly, and its cache.

Every benchmark task's model (the reference CNN on the synthetic scenes or on
the digits, the reference ViT) is trained by :func:`fit_classifier`: Adam with a
one-cycle schedule (:func:`train`) inside :func:`reproducible` (seeded,
deterministic, one thread), from a config that derives from :class:`Recipe`.
:func:`cached_model` keeps the weights under ``$ATTRIBKIT_CACHE`` (default
``~/.cache/attribkit``) by :func:`config_key`, a hash of everything that
determines them, and loads them with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TRAIN_THREADS = 1  # intra-op threads while training: fixed, so the weights do not depend on the caller's


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The training fields every reference model's config shares (each adds its data's
    and architecture's fields; all of them go into the cache key)."""

    n_train: int = 4000
    n_test: int = 1000
    epochs: int = 8
    batch: int = 64
    lr: float = 3e-3
    seed: int = 0


class LabelledImages(Protocol):
    """What :func:`fit_classifier` trains and tests on (``SyntheticData``, ``DigitsData``)."""

    images: np.ndarray  # (N, C, H, W) float32
    labels: np.ndarray  # (N,) int64


def cache_dir() -> Path:
    """``$ATTRIBKIT_CACHE`` or ``~/.cache/attribkit``."""
    return Path(os.environ.get("ATTRIBKIT_CACHE") or Path.home() / ".cache" / "attribkit")


def config_key(config: Any, version: int, **extra: Any) -> str:
    """The cache key of a frozen training config: a short SHA-256 of its fields, the
    cache ``version`` and any ``extra`` that the weights depend on (a library's version)."""
    blob = json.dumps({**dataclasses.asdict(config), "v": version, **extra}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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


def fit_classifier(build: Callable[[], nn.Module], data: LabelledImages, test: LabelledImages, recipe: Recipe, *,
                   channels_last: bool = False, log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """Train ``build()`` on ``data`` from scratch with :func:`train` and ``recipe``, all
    inside :func:`reproducible` (``recipe.seed`` draws the initial weights and the batch
    order; the caller draws ``data`` and ``test`` from it too), and score it on ``test``.
    ``channels_last`` trains in the layout CPU convolutions prefer (the weights come back
    contiguous). Returns the model in eval mode and its record (config, training
    seconds, test accuracy, threads)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with reproducible(recipe.seed):
        model = build().to(memory_format=layout)
        start = time.perf_counter()
        train(model, torch.from_numpy(data.images).contiguous(memory_format=layout), torch.from_numpy(data.labels),
              epochs=recipe.epochs, batch=recipe.batch, lr=recipe.lr, seed=recipe.seed, log=log)
        seconds = time.perf_counter() - start
        model.to(memory_format=torch.contiguous_format)
        test_accuracy = accuracy(model, torch.from_numpy(test.images), torch.from_numpy(test.labels))
    return model, {"config": dataclasses.asdict(recipe), "train_seconds": seconds,
                   "test_accuracy": test_accuracy, "threads": TRAIN_THREADS}


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
    # written whole, then renamed: a process that finds both files (another test worker, a
    # torchrun rank, a second shell) never reads half of one
    _atomic_write(path, lambda tmp: torch.save(model.state_dict(), tmp))
    _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return model.eval(), record


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a private file beside ``path``, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
