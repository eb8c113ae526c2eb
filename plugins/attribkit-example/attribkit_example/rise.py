"""RISE (Petsiuk, Das & Saenko 2018), written against attribkit's public plugin API only.

A black-box method: it needs nothing from the model but ``predict(batch) ->
scores``, so it explains PyTorch modules, ONNX Runtime sessions and NumPy
callables alike (``attribkit.perturbation.forward_kernel`` does the wrapping).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from attribkit.errors import InvalidOptionError
from attribkit.perturbation import forward_kernel, masked_scores


def rise_masks(n: int, size: tuple[int, int], *, grid: int, p_keep: float, seed: int) -> torch.Tensor:
    """``(n, 1, H, W)`` smooth random masks in [0, 1].

    Each mask: a ``grid x grid`` binary grid, cells kept with probability
    ``p_keep``, bilinearly upsampled to ``(grid + 1) * cell`` pixels with
    ``cell = ceil(H / grid)``, then cropped at a random offset in ``[0, cell)``
    in each direction, so the cell edges fall anywhere (Petsiuk et al. 2018, 3.2).
    The masks depend only on ``(n, size, grid, p_keep, seed)``, drawn from a
    private CPU generator (the global RNG is not touched).
    """
    h, w = size
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    gen = torch.Generator().manual_seed(seed)
    cells = (torch.rand(n, 1, grid, grid, generator=gen) < p_keep).float()
    big = F.interpolate(cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear",
                        align_corners=False).clamp_(0, 1)  # rounding can step past 1
    dy = torch.randint(0, cell_h, (n,), generator=gen)
    dx = torch.randint(0, cell_w, (n,), generator=gen)
    return torch.stack([big[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(zip(dy.tolist(), dx.tolist()))])


@forward_kernel
def rise(predict, inputs, target, *, n_masks: int, grid: int, p_keep: float, seed: int,
         probabilities: bool, baseline: float) -> torch.Tensor:
    """RISE saliency ``S(x) = 1 / (N * p) * sum_i f(x * M_i) * M_i``, ``(B, 1, H, W)``.

    ``f`` is the target's softmax probability (``probabilities=True``, as in the
    paper) or raw score; masked-out pixels take ``baseline``; ``p = p_keep`` is
    the expected mask value. All ``B x N`` masked images go through the model in
    batched calls of ``batch_size`` rows. The same ``seed`` gives the same masks
    on every backend, so PyTorch and ONNX Runtime maps agree.

    Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for Explanation
    of Black-box Models" (BMVC).
    """
    if n_masks < 1 or grid < 1:
        raise InvalidOptionError(f"n_masks and grid must be >= 1, got n_masks={n_masks}, grid={grid}")
    if not 0 < p_keep <= 1:
        raise InvalidOptionError(f"p_keep must be in (0, 1], got {p_keep}")
    transform = (lambda s: s.to(torch.promote_types(s.dtype, torch.float32)).softmax(1)) \
        if probabilities and not target.is_callable else None
    masks = rise_masks(n_masks, tuple(inputs.shape[-2:]), grid=grid, p_keep=p_keep, seed=seed)
    masks = masks.to(device=inputs.device, dtype=inputs.dtype)
    scores = masked_scores(predict, inputs, masks, target, baseline=baseline, transform=transform)
    saliency = torch.einsum("bn,nhw->bhw", scores.to(inputs.dtype), masks[:, 0])
    return (saliency / (n_masks * p_keep))[:, None]
