"""Loading images and turning them into model inputs (torch, imported on use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` float array in ``[0, 1]``."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def to_input(image: np.ndarray, size: int = 224, *, mean=IMAGENET_MEAN, std=IMAGENET_STD,
             device: Any = "cpu") -> Any:
    """``(H, W, 3)`` in ``[0, 1]`` -> normalised ``(1, 3, size, size)`` tensor.

    The standard ImageNet evaluation transform: resize the shorter side to
    ``size * 256 / 224``, centre-crop ``size``, subtract ``mean``, divide by ``std``.
    """
    import torch
    from torchvision.transforms import functional as TF

    x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1)
    x = TF.resize(x, round(size * 256 / 224), antialias=True)
    x = TF.center_crop(x, [size, size])
    x = TF.normalize(x, list(mean), list(std))
    return x.unsqueeze(0).to(device)


def denormalize(x: Any, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Any:
    """Invert :func:`to_input`'s normalisation on a ``(B, 3, H, W)`` tensor or array."""
    shape = (1, -1, 1, 1) if x.ndim == 4 else (-1, 1, 1)
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray(std, dtype=np.float32).reshape(shape)
    if hasattr(x, "new_tensor"):
        return x * x.new_tensor(s) + x.new_tensor(m)
    return x * s + m
