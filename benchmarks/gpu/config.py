"""The sizes of a run: the real ones (one CUDA GPU, <= 8 minutes on an H100) and the
dry run's (the same code path on a CPU in well under two minutes)."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a section needs to know about the run's size.

    ``repeats`` timed rounds follow one warm-up round; a group whose warm-up round
    took longer than ``group_budget_s / repeats`` gets fewer rounds (at least one).
    """

    device: torch.device
    dry_run: bool
    repeats: int
    group_budget_s: float
    # kernels: torchvision CNN, its batch and input side
    cnn: str
    batch: int
    size: int
    # attention: a timm ViT at its own input side and batch
    vit: str
    vit_size: int
    vit_batch: int
    # LRP against Zennit
    lrp_model: str
    lrp_batch: int
    # pixel flipping: one-channel images, their number and side, rows per model call
    pf_images: int
    pf_size: int
    pf_rows: int
    # explain_dataset: synthetic images, their side, the batch, the model and method
    dataset_images: int
    dataset_size: int
    dataset_batch: int
    dataset_model: str
    dataset_method: str
    dataset_rounds: int

    def describe(self) -> dict[str, object]:
        """The settings as JSON-ready values."""
        return {k: (str(v) if isinstance(v, torch.device) else v)
                for k, v in dataclasses.asdict(self).items()}


def real(device: torch.device) -> Config:
    """The headline sizes: resnet50 batch 64 at 224 px, deit_small batch 64, 10,000 images."""
    return Config(device=device, dry_run=False, repeats=5, group_budget_s=12.0,
                  cnn="resnet50", batch=64, size=224,
                  vit="deit_small_patch16_224", vit_size=224, vit_batch=64,
                  lrp_model="resnet50", lrp_batch=64,
                  pf_images=64, pf_size=32, pf_rows=256,
                  dataset_images=10_000, dataset_size=224, dataset_batch=64,
                  dataset_model="resnet50", dataset_method="gradcam", dataset_rounds=1)


def dry(device: torch.device) -> Config:
    """Tiny sizes for a CPU: the same sections and code path, one timed round."""
    return Config(device=device, dry_run=True, repeats=1, group_budget_s=2.0,
                  cnn="resnet18", batch=2, size=32,
                  vit="deit_small_patch16_224", vit_size=32, vit_batch=2,
                  lrp_model="resnet18", lrp_batch=2,
                  pf_images=4, pf_size=8, pf_rows=64,
                  dataset_images=64, dataset_size=32, dataset_batch=16,
                  dataset_model="resnet18", dataset_method="gradcam", dataset_rounds=1)
