"""The random-attribution baseline: needs nothing but ``predict``."""

from __future__ import annotations

import torch

from attribkit.perturbation.runner import forward_kernel


@forward_kernel(image=False)
def random_attribution(predict, inputs, target, *, seed: int) -> torch.Tensor:
    """``U(0, 1)`` per pixel, ``(B, 1, H, W)`` for images. Each image's generator
    is seeded from ``seed`` and a fingerprint of the image's values, so a map
    depends on the image and the seed, not on the batch it came in."""
    shape = (1, *inputs.shape[2:]) if inputs.ndim == 4 else tuple(inputs.shape[1:])
    maps = []
    for image in inputs:
        fingerprint = int(image.double().sum().mul(1e6).abs().item()) % (2**31)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + fingerprint)
        maps.append(torch.rand(shape, generator=gen))
    return torch.stack(maps).to(inputs.device)
