"""The reference CNN: a small CNN trained on the synthetic scenes, cached on disk.

``conv blocks -> global average pooling -> linear``, so every CAM method
applies. Trained on :func:`attribkit.bench.synthetic.make_dataset` by
:func:`fit` with the shared recipe of :mod:`attribkit.bench.training`
(reproducible, cached by a hash of :class:`TrainConfig`); the digits task
trains the same network on other data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from attribkit.bench.synthetic import make_dataset
from attribkit.bench.training import (  # noqa: F401 - the recipe's names, long imported from here
    TRAIN_THREADS,
    Recipe,
    accuracy,
    cache_dir,
    cached_model,
    config_key,
    fit_classifier,
    reproducible,
    train,
)

CACHE_VERSION = 2  # bump whenever training changes, so stale cached weights are not reused


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
        """Class scores ``(B, classes)``."""
        return self.fc(self.pool(self.features(x)).flatten(1))


@dataclasses.dataclass(frozen=True)
class TrainConfig(Recipe):
    """Everything that determines the trained weights (and so the cache key): the
    shared :class:`~attribkit.bench.training.Recipe` and the scenes' and network's sizes."""

    classes: int = 6
    size: int = 64
    width: int = 32
    spurious: bool = False

    def key(self) -> str:
        """A hash of the config and :data:`CACHE_VERSION`."""
        return config_key(self, CACHE_VERSION)


def fit(config: TrainConfig, *, log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """Train a reference model from scratch (no cache) and return it with its record
    (config, training seconds, test accuracy, threads).

    Everything is drawn from ``config.seed``: the training images
    (``make_dataset(seed=config.seed)``), the test images (``config.seed +
    10_000``), the initial weights and the batch order, by
    :func:`~attribkit.bench.training.fit_classifier`.
    """
    data = make_dataset(config.n_train, size=config.size, classes=config.classes, seed=config.seed,
                        spurious=config.spurious)
    test = make_dataset(config.n_test, size=config.size, classes=config.classes, seed=config.seed + 10_000)
    return fit_classifier(lambda: ReferenceCNN(config.classes, config.width), data, test, config,
                          channels_last=True, log=log)


def reference_model(config: TrainConfig = TrainConfig(), *,
                    log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """The trained reference model (from the cache when present, else :func:`fit`)
    and its record (config, test accuracy, training seconds, threads, cache path)."""
    return cached_model(f"reference-{config.key()}", lambda: ReferenceCNN(config.classes, config.width),
                        lambda: fit(config, log=log))
