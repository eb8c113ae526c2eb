"""Randomness and image transforms for activation maximisation, one row at a time.

Every row of the optimised batch owns a :class:`torch.Generator` seeded from
``(seed, kind, key)`` (``key``: the row's channel or class, or its index for
DeepDream rows). The row's starting noise and its jitter shifts come from that
generator only, so a row's result does not depend on which other rows are in
the batch: optimising channels ``[3, 7]`` together gives, row for row, the
images of optimising ``[3]`` and ``[7]`` alone with the same seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

ROW_KINDS = {"channel": 0, "class": 1, "row": 2}


def row_generator(seed: int, kind: str, key: int) -> torch.Generator:
    """A CPU generator for one row, independent of the other rows (NumPy's
    ``SeedSequence`` mixes ``seed``, the kind and the key)."""
    sequence = np.random.SeedSequence(entropy=int(seed), spawn_key=(ROW_KINDS[kind], int(key)))
    return torch.Generator().manual_seed(int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1))


def random_shifts(generators: list[torch.Generator], jitter: int) -> torch.Tensor:
    """``(B, 2)`` integer shifts ``(dy, dx)``, uniform in ``[-jitter, jitter]``;
    row ``i`` drawn from generator ``i``."""
    if jitter == 0:
        return torch.zeros(len(generators), 2, dtype=torch.long)
    return torch.stack([torch.randint(-jitter, jitter + 1, (2,), generator=g) for g in generators])


def roll_rows(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Row ``b`` of ``x`` (``(B, C, H, W)``) rolled by ``shifts[b] = (dy, dx)``:
    ``torch.roll(x[b], (dy, dx), dims=(1, 2))`` for every row at once (two gathers)."""
    b, c, h, w = x.shape
    shifts = shifts.to(x.device)
    rows = (torch.arange(h, device=x.device) - shifts[:, :1]) % h          # (B, H)
    cols = (torch.arange(w, device=x.device) - shifts[:, 1:]) % w          # (B, W)
    x = x.gather(2, rows[:, None, :, None].expand(b, c, h, w))
    return x.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian ``exp(-t^2 / (2 sigma^2))`` on ``t = -r..r``, ``r = ceil(3 sigma)``."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel of ``(B, C, H, W)``, reflected borders."""
    k = gaussian_kernel(sigma).to(x)
    r, c = len(k) // 2, x.shape[1]
    mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def frequencies(h: int, w: int) -> torch.Tensor:
    """``(H, W // 2 + 1)``: the radial frequency ``sqrt(fy^2 + fx^2)`` (cycles per pixel)
    of each coefficient of ``torch.fft.rfft2`` on an ``H x W`` image."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fy ** 2 + fx ** 2)


def gaussian_transfer(h: int, w: int, sigma: float) -> torch.Tensor:
    """The Fourier transform of a Gaussian blur of width ``sigma`` pixels,
    ``exp(-2 pi^2 sigma^2 f^2)``: multiplying a spectrum by it blurs the image (circularly)."""
    return torch.exp(-2 * math.pi ** 2 * sigma ** 2 * frequencies(h, w) ** 2)
