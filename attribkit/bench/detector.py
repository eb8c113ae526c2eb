"""The reference detector: torchvision's FCOS with a tiny backbone, trained on the scenes.

:func:`build_detector` is torchvision's :class:`~torchvision.models.detection.FCOS`
(one-stage, anchor-free; Tian et al. 2019) on one stride-4 feature map of a four-block
CNN (the blocks of :class:`~attribkit.bench.segmenter.SceneFCN`), with a one-conv head
and images kept at their size (``min_size = max_size = size``). In eval mode it takes
a batch (or a list) of images and returns torchvision's list of dicts (``boxes``
x1y1x2y2, ``labels``, ``scores``), which :class:`attribkit.targets.Box` reads. It is
trained on :func:`attribkit.bench.scenes.make_scenes`' boxes (label = class + 1) with
Adam and a one-cycle schedule inside :func:`~attribkit.bench.training.reproducible`,
and cached by a hash of :class:`DetTrainConfig` and torchvision's version.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import nn

from attribkit.bench.scenes import SceneData, make_scenes
from attribkit.bench.training import TRAIN_THREADS, Recipe, cached_model, config_key, reproducible
from attribkit.targets.boxes import box_iou

CACHE_VERSION = 1  # bump whenever training changes, so stale cached weights are not reused


class Backbone(nn.Module):
    """Four conv blocks (BatchNorm, ReLU; two stride-2, one dilated): a stride-4 feature map
    of ``out_channels`` channels."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU()]

        self.body = nn.Sequential(*block(3, width), *block(width, 2 * width, stride=2),
                                  *block(2 * width, 4 * width, stride=2), *block(4 * width, 4 * width, dilation=2))
        self.out_channels = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, out_channels, H/4, W/4)``."""
        return self.body(x)


@dataclasses.dataclass(frozen=True)
class DetTrainConfig(Recipe):
    """Everything that determines the trained weights (and so the cache key)."""

    n_train: int = 2000
    n_test: int = 500
    epochs: int = 8
    batch: int = 32
    lr: float = 3e-3
    classes: int = 6
    size: int = 64
    width: int = 16  # the backbone's first width; the head has 4 x width channels (a multiple of 32)

    def key(self) -> str:
        """A hash of the config, :data:`CACHE_VERSION` and torchvision's version."""
        import torchvision

        return config_key(self, CACHE_VERSION, torchvision=torchvision.__version__)


def build_detector(classes: int = 6, width: int = 16, size: int = 64) -> nn.Module:
    """An untrained FCOS for ``classes`` pattern classes (labels ``1..classes``) on
    ``size`` px images (no resizing), at most 10 detections per image, of a score above 0.3
    (below it the trained model's only detections are weaker duplicates of the pattern's
    box under another label, which the highest-IoU matching of ``ak.Box`` could pick)."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    backbone = Backbone(width)
    return FCOS(backbone, num_classes=classes + 1, min_size=size, max_size=size,
                image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25],
                anchor_generator=AnchorGenerator(sizes=((4,),), aspect_ratios=((1.0,),)),
                head=FCOSHead(backbone.out_channels, 1, classes + 1, num_convs=1),
                score_thresh=0.3, detections_per_img=10, topk_candidates=100)


def _targets(data: SceneData, idx: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.from_numpy(data.boxes[i:i + 1]), "labels": torch.from_numpy(data.labels[i:i + 1])}
            for i in idx.tolist()]


def train_detector(model: nn.Module, data: SceneData, *, epochs: int, batch: int, lr: float, seed: int,
                   log: Callable[[str], None] | None = None) -> nn.Module:
    """Adam + one-cycle schedule on the sum of FCOS's losses, the batch order drawn from
    ``seed``; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(data) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    images = torch.from_numpy(data.images)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(data), generator=gen)
        total = 0.0
        for start in range(0, len(data), batch):
            idx = order[start:start + batch]
            loss = sum(model(list(images[idx]), _targets(data, idx)).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.detach().item() * len(idx)
        if log:
            log(f"epoch {epoch + 1}/{epochs}: loss {total / len(data):.4f}")
    return model.eval()


@torch.no_grad()
def detection_scores(model: nn.Module, test: SceneData, batch: int = 100) -> dict[str, float]:
    """``test_accuracy``: the share of scenes whose top detection has the pattern's label
    and an IoU above 0.5 with its box; ``mean_iou``: the mean IoU of the top detection
    (0 where there is none)."""
    model.eval()
    hits, ious = 0, 0.0
    for start in range(0, len(test), batch):
        found = model(torch.from_numpy(test.images[start:start + batch]))
        for k, d in enumerate(found):
            if len(d["boxes"]) == 0:
                continue
            iou = float(box_iou(torch.from_numpy(test.boxes[start + k:start + k + 1]), d["boxes"][:1])[0, 0])
            hits += int(iou > 0.5 and int(d["labels"][0]) == int(test.labels[start + k]))
            ious += iou
    return {"test_accuracy": hits / len(test), "mean_iou": ious / len(test)}


def fit(config: DetTrainConfig, *, log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """Train :func:`build_detector` from scratch on ``make_scenes(seed=config.seed)`` and score it
    on ``config.seed + 10_000``; returns the model (eval mode) and its record."""
    data = make_scenes(config.n_train, size=config.size, classes=config.classes, seed=config.seed)
    test = make_scenes(config.n_test, size=config.size, classes=config.classes, seed=config.seed + 10_000)
    with reproducible(config.seed):
        model = build_detector(config.classes, config.width, config.size)
        start = time.perf_counter()
        train_detector(model, data, epochs=config.epochs, batch=config.batch, lr=config.lr, seed=config.seed,
                       log=log)
        seconds = time.perf_counter() - start
        scores = detection_scores(model, test)
    return model, {"config": dataclasses.asdict(config), "train_seconds": seconds, **scores,
                   "threads": TRAIN_THREADS}


def detection_model(config: DetTrainConfig = DetTrainConfig(), *,
                    log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """The trained detector (from the cache when present, else :func:`fit`) and its record."""
    return cached_model(f"detection-{config.key()}",
                        lambda: build_detector(config.classes, config.width, config.size),
                        lambda: fit(config, log=log))
