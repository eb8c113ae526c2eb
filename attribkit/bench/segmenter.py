"""The reference segmentation network: a small fully-convolutional net trained on the scenes.

:class:`SceneFCN` maps a ``(B, 3, H, W)`` scene to ``(B, classes + 1, H, W)`` logits
(class 0 the background), through four conv blocks (two stride-2, one dilated, so
each output pixel sees about 30 px: the whole 12 px pattern), a 1x1 classifier and a
bilinear upsampling. It is trained on :func:`attribkit.bench.scenes.make_scenes`'
per-pixel classes with the shared recipe (:func:`attribkit.bench.training.train`:
Adam, one-cycle, per-pixel cross-entropy, reproducible) through logit adjustment
(:class:`_PriorShifted`: the background holds ~97 % of the pixels) and cached by a hash
of :class:`SegTrainConfig`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attribkit.bench.scenes import SceneData, make_scenes
from attribkit.bench.training import TRAIN_THREADS, Recipe, cached_model, config_key, reproducible, train

CACHE_VERSION = 1  # bump whenever training changes, so stale cached weights are not reused


class SceneFCN(nn.Module):
    """Conv blocks (BatchNorm, ReLU; two stride-2, one dilated) -> 1x1 classifier -> upsampling."""

    def __init__(self, classes: int = 6, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(3, width), *block(width, 2 * width, stride=2),
            *block(2 * width, 4 * width, stride=2), *block(4 * width, 4 * width, dilation=2))
        self.classifier = nn.Conv2d(4 * width, classes + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel logits ``(B, classes + 1, H, W)``."""
        logits = self.classifier(self.features(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@dataclasses.dataclass(frozen=True)
class SegTrainConfig(Recipe):
    """Everything that determines the trained weights (and so the cache key)."""

    n_train: int = 2000
    n_test: int = 500
    epochs: int = 6
    batch: int = 32
    lr: float = 1e-2
    classes: int = 6
    size: int = 64
    width: int = 16

    def key(self) -> str:
        """A hash of the config and :data:`CACHE_VERSION`."""
        return config_key(self, CACHE_VERSION)


@torch.no_grad()
def segmentation_scores(model: nn.Module, test: SceneData, batch: int = 250) -> dict[str, float]:
    """``test_accuracy``: the share of scenes whose pattern pixels are mostly predicted
    as the pattern's class; ``pattern_iou``: the intersection over union of the
    predicted and the true pattern pixels (any class counted as wrong but its own)."""
    model.eval()
    hits, inter, union = 0, 0, 0
    for start in range(0, len(test), batch):
        pred = model(torch.from_numpy(test.images[start:start + batch])).argmax(1)
        true = torch.from_numpy(test.segments[start:start + batch])
        pattern = true > 0
        right = (pred == true) & pattern
        hits += int((right.sum((1, 2)) * 2 > pattern.sum((1, 2))).sum())
        inter += int(right.sum())
        union += int((pattern | (pred > 0)).sum())
    return {"test_accuracy": hits / len(test), "pattern_iou": inter / max(union, 1)}


class _PriorShifted(nn.Module):
    """``model(x) + log_prior`` per class: training through it is the logit-adjusted
    cross-entropy (Menon et al. 2021, "Long-tail learning via logit adjustment", ICLR),
    so the network itself learns balanced logits although the background holds ~97 %
    of the pixels."""

    def __init__(self, model: nn.Module, log_prior: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("log_prior", log_prior.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.log_prior


def fit(config: SegTrainConfig, *, log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """Train :class:`SceneFCN` from scratch on ``make_scenes(seed=config.seed)`` and score it on
    ``config.seed + 10_000``; returns the model (eval mode) and its record."""
    data = make_scenes(config.n_train, size=config.size, classes=config.classes, seed=config.seed)
    test = make_scenes(config.n_test, size=config.size, classes=config.classes, seed=config.seed + 10_000)
    with reproducible(config.seed):
        model = SceneFCN(config.classes, config.width)
        start = time.perf_counter()
        segments = torch.from_numpy(data.segments)
        prior = torch.bincount(segments.flatten(), minlength=config.classes + 1).double() / segments.numel()
        shifted = _PriorShifted(model, prior.clamp(min=1e-6).log().float())
        train(shifted, torch.from_numpy(data.images), segments, epochs=config.epochs,
              batch=config.batch, lr=config.lr, seed=config.seed, log=log)
        seconds = time.perf_counter() - start
        scores = segmentation_scores(model, test)
    return model, {"config": dataclasses.asdict(config), "train_seconds": seconds, **scores,
                   "threads": TRAIN_THREADS}


def segmentation_model(config: SegTrainConfig = SegTrainConfig(), *,
                       log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """The trained :class:`SceneFCN` (from the cache when present, else :func:`fit`) and its record."""
    return cached_model(f"segmentation-{config.key()}", lambda: SceneFCN(config.classes, config.width),
                        lambda: fit(config, log=log))
