"""D-RISE (Petsiuk et al. 2021): which pixels make a detector find a reference box.

RISE's masks (:class:`~attribkit.perturbation.rise.RiseMasks`) weighted by D-RISE's
similarity of each reference box to the detections on the masked image
(:class:`~attribkit.targets.Box` with ``score="drise"``). One map per reference box;
the boxes of one image share every forward.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from attribkit.errors import TargetError
from attribkit.perturbation.masks import masked_scores
from attribkit.perturbation.rise import RiseMasks, check_mask_options, checked, weighted_mask_sum
from attribkit.perturbation.runner import forward_kernel
from attribkit.targets.boxes import Box
from attribkit.torch.targets import ChunkTarget


def check_target(target: Any) -> None:
    """``TargetError`` unless ``target`` is a :class:`~attribkit.targets.Box`."""
    if not isinstance(target, Box):
        got = "None" if target is None else type(target).__name__
        raise TargetError(
            "drise explains a detector's boxes: pass target=ak.Box(box, label) (x1y1x2y2 pixels; one "
            f"box per image, or a list of (K, 4) tensors for several boxes per image); got {got}. "
            "For a classifier or a segmenter use method='rise'")


def drise_similarity(box: Box) -> Box:
    """``box`` scoring with D-RISE's similarity (``score="drise"``), whatever it was given."""
    similar = copy.copy(box)
    similar.kind = "drise"
    return similar


@forward_kernel(image=True)
def _drise(predict, inputs, target, *, n_masks: int, grid: int, p_keep: float, seed: int,
           baseline: float, forward_batch_size: int | None) -> torch.Tensor:
    similarity = ChunkTarget(drise_similarity(target.parsed))
    masks = RiseMasks(n_masks, tuple(inputs.shape[-2:]), grid=grid, p_keep=p_keep, seed=seed,
                      device=inputs.device, dtype=inputs.dtype)
    weights = masked_scores(predict, inputs, masks, similarity, baseline=baseline, rows=forward_batch_size)
    return weighted_mask_sum(weights.to(inputs.dtype), masks) / n_masks


def _check(options: dict[str, Any], target: Any) -> None:
    check_target(target)
    check_mask_options(options, "drise")


drise = checked(_drise, _check)
drise.__doc__ = """D-RISE saliency of reference box ``t``: ``H_t = sum_i w_{t,i} M_i / N``.

``M_i`` are ``n_masks`` RISE masks (:class:`~attribkit.perturbation.rise.RiseMasks`:
``grid``, ``p_keep``, ``seed``; masked pixels take ``baseline``), shared by every image
and box of the call. ``w_{t,i} = max_j IoU(t, d_j) * cos(p_t, p_j) * o_j`` over the
detections ``d_j`` of the masked image ``x * M_i`` (the target's ``score="drise"``:
used whatever ``score`` the ``Box`` was given). The paper sums ``w M`` without a
factor; dividing by ``N`` (a constant: the same map) keeps values comparable across
``n_masks``. A ``Box`` with several boxes per image gives one row per box
(``result.meta["image_index"]``); each masked image goes through the detector once and
every box of that image is scored on the same detections. Returns ``(rows, 1, H, W)``.

Petsiuk, Jain, Manjunatha, Morariu, Mehra, Ordonez & Saenko 2021, "Black-box
Explanation of Object Detectors via Saliency Maps", CVPR.
"""
