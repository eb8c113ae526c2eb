"""Score every image under every mask, in batched model calls."""

from __future__ import annotations

from collections.abc import Callable

import torch

from attribkit.errors import InputError
from attribkit.progress import progress
from attribkit.torch.chunking import measure, rows_per_chunk
from attribkit.torch.targets import ChunkTarget

DEFAULT_ROWS = 256


def masked_scores(predict: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                  masks: torch.Tensor, target: ChunkTarget, *,
                  baseline: float | torch.Tensor = 0.0,
                  transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  rows: int | None = None) -> torch.Tensor:
    """``s[b, n] = f_target(x_b * m_n + baseline_b * (1 - m_n))`` for every image and mask.

    Args:
        predict: ``batch -> scores`` (e.g. a :class:`~attribkit.predict.Predict`).
        inputs: ``(B, C, H, W)`` images.
        masks: ``(N, 1 | C, H, W)`` keep-masks in [0, 1] (1 keeps the pixel).
        target: whose class indices are already fixed (``target.indices_for``
            on the unperturbed scores), or a row-wise callable.
        baseline: what masked pixels become: a number or a tensor broadcastable
            to ``(B, C, H, W)`` (e.g. a blurred copy of the images).
        transform: applied to the scores before the target is selected
            (e.g. ``lambda s: s.softmax(1)`` for probabilities).
        rows: perturbed images built and scored at a time (memory bound);
            default: ``predict.batch_size``, else as many as the memory budget
            holds (:mod:`attribkit.torch.chunking`, measured by one forward of
            one image of ``predict.module``), at most 256.

    All ``B * N`` perturbed images are streamed image-major through the model
    in chunks of ``rows``; the result is ``(B, N)``.
    """
    if masks.ndim != 4 or masks.shape[-2:] != inputs.shape[-2:]:
        raise InputError(f"masks must be (N, 1 or C, {inputs.shape[-2]}, {inputs.shape[-1]}), "
                         f"got {tuple(masks.shape)}")
    b, n = len(inputs), len(masks)
    masks = masks.to(device=inputs.device, dtype=inputs.dtype)
    base = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device)
    base = base.expand_as(inputs) if base.ndim else base
    rows = rows or getattr(predict, "batch_size", None) or min(DEFAULT_ROWS, rows_per_chunk(
        measure(getattr(predict, "module", None), inputs, grad=False), total=b * n))
    out = []
    with progress(b * n, "perturbed images", unit="image") as bar:
        for start in range(0, b * n, rows):
            k = torch.arange(start, min(start + rows, b * n), device=inputs.device)
            image, mask = k // n, masks[k % n]
            fill = base[image] if base.ndim else base
            scores = predict(inputs[image] * mask + fill * (1 - mask))
            if transform is not None:
                scores = transform(scores)
            out.append(target.select_rows(scores, image))
            bar.update(len(k))
    return torch.cat(out).view(b, n)
