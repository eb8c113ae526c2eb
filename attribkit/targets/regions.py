"""Segmentation targets: a class's logits summed over a region (``Region``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from attribkit.errors import TargetError
from attribkit.targets.base import (Target, as_index_tensor, check_range, describe, find_tensor,
                                    row_index)

SEGMENT_KEYS = ("out", "logits")
_REGION_FITS = ("Region reads (B, classes, H, W) logits: a tensor, a dict with 'out' (torchvision "
                "FCN, DeepLabV3, LRASPP) or 'logits' (Hugging Face), or a tuple whose first element "
                "is one. (B, classes) scores fit Class(c)")


def segment_logits(output: Any) -> torch.Tensor:
    """The ``(B, classes, H, W)`` logits of a segmentation model's raw output."""
    logits = find_tensor(output, SEGMENT_KEYS, what="(B, classes, H, W) segmentation logits",
                         fits=_REGION_FITS)
    if logits.ndim != 4:
        fits = (" (B, classes) scores fit Class(c) or Labels([...]), (B, D) embeddings "
                "Similarity(vector)" if logits.ndim == 2 else "")
        raise TargetError(f"Region reads (B, classes, H, W) segmentation logits; the model returned "
                          f"{describe(logits)}.{fits}")
    return logits


class Region(Target):
    """The logits of class ``cls`` summed over the pixels of ``mask`` (all pixels if
    ``None``): ``S_i = sum_{p in mask_i} logits[i, cls_i, p]`` (pytorch-grad-cam's
    ``SemanticSegmentationTarget``).

    ``cls``: one int or one per image. ``mask``: ``(H, W)`` for all images or
    ``(B, H, W)`` one per image, bool or 0/1 (a float mask weights the pixels). A mask
    larger than the logits (drawn on the image, for a model whose logits are smaller:
    Hugging Face SegFormer's are 1/4 of the image) is matched by upsampling the logits
    to the mask's size (bilinear, ``align_corners=False``, as Hugging Face's
    ``post_process_semantic_segmentation`` and torchvision's heads do), so the score is
    the class logits of the full-size prediction summed inside the mask. A mask
    smaller than the logits, or of another aspect ratio, is a ``TargetError``.
    """

    def __init__(self, cls: Any, mask: Any = None) -> None:
        self.classes = as_index_tensor(cls, "Region(cls)")
        self.mask = None if mask is None else _as_mask(mask)

    def __repr__(self) -> str:
        shape = None if self.mask is None else tuple(self.mask.shape)
        return f"Region(cls={self.classes.tolist()}, mask={shape})"

    def bind(self, batch: int) -> Region:
        if len(self.classes) not in (1, batch):
            raise TargetError(f"Region got {len(self.classes)} classes for a batch of {batch} images")
        mask = self.mask
        if mask is not None:
            if mask.ndim == 2:
                mask = mask.expand(batch, *mask.shape)
            elif len(mask) != batch:
                raise TargetError(f"Region got {len(mask)} masks for a batch of {batch} images; "
                                  "pass one (H, W) mask for all images or one per image")
            empty = (mask.flatten(1) == 0).all(1)
            if bool(empty.any()):
                raise TargetError(f"Region's mask of image {int(empty.nonzero()[0])} is empty: "
                                  "nothing to explain")
        bound = Region.__new__(Region)
        bound.classes, bound.mask, bound.bound = self.classes.expand(batch).clone(), mask, True
        return bound

    def take(self, rows: torch.Tensor) -> Region:
        taken = Region.__new__(Region)
        rows = rows.cpu()
        taken.classes = self.classes[rows]
        taken.mask = None if self.mask is None else self.mask[rows]
        taken.bound = True
        return taken

    def labels(self) -> torch.Tensor:
        return self.classes

    def score(self, output: Any, images: torch.Tensor | None = None) -> torch.Tensor:
        logits = segment_logits(output)
        check_range(self.classes, logits.shape[1], "class")
        rows = row_index(images, len(logits), logits.device)
        picked = logits[torch.arange(len(logits), device=logits.device),
                        self.classes.to(logits.device)[rows]]
        if self.mask is None:
            return self.check_rows(picked.sum((1, 2)), len(logits))
        mask = self.mask.to(logits.device, picked.dtype)[rows.cpu() if self.mask.is_cpu else rows]
        if mask.shape[-2:] != picked.shape[-2:]:
            _check_mask_size(tuple(mask.shape[-2:]), tuple(picked.shape[-2:]))
            picked = F.interpolate(picked[:, None], size=mask.shape[-2:], mode="bilinear",
                                   align_corners=False)[:, 0]
        return self.check_rows((picked * mask).sum((1, 2)), len(logits))


def _check_mask_size(mask: tuple[int, int], logits: tuple[int, int]) -> None:
    """``TargetError`` unless a ``mask`` of another size than the ``logits`` is larger
    than them with the same aspect ratio (one pixel of rounding either way)."""
    (mh, mw), (lh, lw) = mask, logits
    scale = mh / lh
    if mh < lh or mw < lw or abs(mw / scale - lw) > 1 or abs(mh / (mw / lw) - lh) > 1:
        raise TargetError(f"Region's mask is {mh}x{mw}, the model's logits {lh}x{lw}: draw the "
                          "mask on the image or at the logits' size (a larger mask needs the "
                          "logits' aspect ratio)")


def _as_mask(mask: Any) -> torch.Tensor:
    m = torch.as_tensor(mask)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim not in (2, 3) or m.is_complex():
        raise TargetError(f"Region's mask must be (H, W) or (B, H, W), got shape {tuple(m.shape)}")
    m = m.float() if m.dtype == torch.bool or not m.is_floating_point() else m
    if not bool(torch.isfinite(m).all()):
        raise TargetError("Region's mask holds NaN or infinite values")
    return m.detach().cpu()
