"""RISE (Petsiuk, Das & Saenko 2018): the target's score under random smooth masks.

The masks (:class:`RiseMasks`) are drawn once per call and shared by every image;
they are built on the inputs' device as the forwards need them, so ``n_masks``
masks never sit in memory at once. D-RISE (:mod:`attribkit.perturbation.drise`)
uses the same masks with a detector's similarity.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from attribkit.errors import InvalidOptionError
from attribkit.perturbation.masks import masked_scores
from attribkit.perturbation.runner import forward_kernel
from attribkit.targets.classes import Class, class_scores

#: masks built at a time when the weighted sum of the masks is taken
MASK_BLOCK = 256


class RiseMasks:
    """``n`` random smooth keep-masks of ``size`` ``(H, W)``, made on demand.

    Each mask: a ``grid x grid`` binary grid whose cells are kept (1) with probability
    ``p_keep``, upsampled bilinearly (``align_corners=False``) to ``(grid + 1) * cell``
    pixels with ``cell = ceil(H / grid)`` (and ``ceil(W / grid)`` across), then cropped to
    ``H x W`` at an offset drawn uniformly from ``[0, cell)`` in each direction, so the
    cell edges fall anywhere (Petsiuk et al. 2018, section 3.2). The grids and offsets
    come from a private CPU generator seeded with ``seed`` (the global RNG is not
    touched), so the masks are the same on every device and backend. ``masks[index]``
    builds the masks ``index`` (a 1-D tensor) on ``device``: ``(k, 1, H, W)`` in [0, 1].
    """

    def __init__(self, n: int, size: tuple[int, int], *, grid: int, p_keep: float, seed: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.cell = (math.ceil(self.size[0] / grid), math.ceil(self.size[1] / grid))
        self.upsampled = ((grid + 1) * self.cell[0], (grid + 1) * self.cell[1])
        gen = torch.Generator().manual_seed(int(seed))
        self.grids = (torch.rand(n, 1, grid, grid, generator=gen) < p_keep).to(device=device, dtype=dtype)
        self.offsets = torch.stack([torch.randint(0, self.cell[0], (n,), generator=gen),
                                    torch.randint(0, self.cell[1], (n,), generator=gen)], 1).to(device)

    ndim = 4

    def __len__(self) -> int:
        return len(self.grids)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(n, 1, H, W)``, as a tensor of the masks would have."""
        return (len(self), 1, *self.size)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        index = torch.as_tensor(index, device=self.grids.device).reshape(-1)
        big = F.interpolate(self.grids[index], size=self.upsampled, mode="bilinear", align_corners=False)
        h, w = self.size
        offsets = self.offsets[index]
        ys = (offsets[:, :1] + torch.arange(h, device=big.device))[:, :, None]  # (k, H, 1)
        xs = (offsets[:, 1:] + torch.arange(w, device=big.device))[:, None, :]  # (k, 1, W)
        picked = big[torch.arange(len(index), device=big.device)[:, None, None], 0, ys, xs]
        return picked.clamp_(0, 1)[:, None]  # bilinear weights can round a hair past 1


def weighted_mask_sum(weights: torch.Tensor, masks: RiseMasks) -> torch.Tensor:
    """``sum_n weights[b, n] * M_n`` as ``(B, 1, H, W)``, building :data:`MASK_BLOCK`
    masks at a time."""
    total = None
    for start in range(0, len(masks), MASK_BLOCK):
        block = torch.arange(start, min(start + MASK_BLOCK, len(masks)))
        part = torch.einsum("bn,nhw->bhw", weights[:, start:start + len(block)],
                            masks[block][:, 0].to(weights.dtype))
        total = part if total is None else total + part
    return total[:, None]


def _positive_int(options: dict[str, Any], key: str, method: str, *, optional: bool = False) -> None:
    value = options.get(key)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidOptionError(f"{method} option {key!r} must be a positive integer"
                                 f"{' or None' if optional else ''}, got {value!r}")


def check_mask_options(options: dict[str, Any], method: str) -> None:
    """``InvalidOptionError`` for RISE / D-RISE mask options out of range (before any forward)."""
    _positive_int(options, "n_masks", method)
    _positive_int(options, "grid", method)
    _positive_int(options, "forward_batch_size", method, optional=True)
    p = options.get("p_keep")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p < 1:
        raise InvalidOptionError(f"{method} option 'p_keep' (the probability a grid cell is kept) "
                                 f"must lie strictly between 0 and 1, got {p!r}")
    seed = options.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidOptionError(f"{method} option 'seed' must be an integer, got {seed!r}")
    base = options.get("baseline")
    if isinstance(base, bool) or not isinstance(base, numbers.Real) or not math.isfinite(base):
        raise InvalidOptionError(f"{method} option 'baseline' (the value of masked pixels) must be "
                                 f"a finite number, got {base!r}")


def checked(run: Callable, check: Callable[[dict[str, Any], Any], None]) -> Callable:
    """The method ``run`` (a :func:`forward_kernel`) with ``check(options, target)`` first,
    so bad options and targets are refused before any forward."""

    @functools.wraps(run)
    def method(model: Any, inputs: Any, *, options: dict[str, Any] | None = None, target: Any = None,
               **call: Any) -> Any:
        check(dict(options or {}), target)
        return run(model, inputs, options=options, target=target, **call)

    method.kernel = run.kernel
    return method


def _probabilities(raw: Any) -> torch.Tensor:
    scores = class_scores(raw)
    return scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(1)


@forward_kernel(image=True)
def _rise(predict, inputs, target, *, n_masks: int, grid: int, p_keep: float, seed: int,
          baseline: float, probabilities: bool, forward_batch_size: int | None) -> torch.Tensor:
    masks = RiseMasks(n_masks, tuple(inputs.shape[-2:]), grid=grid, p_keep=p_keep, seed=seed,
                      device=inputs.device, dtype=inputs.dtype)
    classes = not target.is_callable and (not target.is_object or isinstance(target.parsed, Class))
    scores = masked_scores(predict, inputs, masks, target, baseline=baseline, rows=forward_batch_size,
                           transform=_probabilities if probabilities and classes else None)
    return weighted_mask_sum(scores.to(inputs.dtype), masks) / (n_masks * p_keep)


rise = checked(_rise, lambda options, _target: check_mask_options(options, "rise"))
rise.__doc__ = """RISE saliency ``S_b = sum_i f_b(x_b * M_i + baseline * (1 - M_i)) * M_i / (N * p_keep)``.

``f_b`` is the target's score of image ``b``: for a class target (``None``, an int,
one per image, ``Class``) its softmax probability (``probabilities=True``, as in the
paper and its reference code) or its logit (``False``); for any other target (a
callable, ``Region``, ``Box``, ``Labels``, ``Similarity``) the target's own score.
``M_i`` are ``n_masks`` :class:`RiseMasks` (``grid``, ``p_keep``, ``seed``), shared by
every image of the call. Dividing by ``N * p_keep`` (the expected mask value) makes
``S(pixel)`` the Monte Carlo estimate of ``E[f(x * M) M(pixel)] / E[M(pixel)]``, the
expected score when the pixel is kept (the paper's eq. 6; its reference code divides
the same way). All ``images x masks`` rows go
through the model in batched calls of ``forward_batch_size`` rows (default: the
``batch_size``, else what the memory budget holds); rows that hold one image (a target
with several things per image) share their forwards. Returns ``(B, 1, H, W)``.

Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC.
"""
