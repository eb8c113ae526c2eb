"""Score every image under every mask, in batched model calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from attribkit.errors import InputError
from attribkit.progress import progress
from attribkit.torch.chunking import measure, rows_per_chunk
from attribkit.torch.targets import ChunkTarget

DEFAULT_ROWS = 256


def distinct_rows(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, owner)``: the index of the first row of each distinct image of ``inputs``
    (in order of appearance), and for every row the position in ``first`` of its image.

    Rows are the same image when their values are equal (``torch.equal``); a target that
    explains several things per image (several boxes, ``Labels([3, 7])``) repeats each
    image once per thing, and these rows need one forward per mask, not one each.
    """
    flat = inputs.reshape(len(inputs), -1)
    weights = torch.linspace(1, 2, flat.shape[1], dtype=torch.float64, device=flat.device)
    first: list[int] = []
    owner: list[int] = []
    seen: dict[float, list[int]] = {}  # a cheap key per row -> the distinct images with that key
    for row in range(len(flat)):
        key = float((flat[row].double() * weights).sum())  # equal rows, equal keys
        same = next((j for j in seen.get(key, ()) if torch.equal(flat[first[j]], flat[row])), None)
        if same is None:
            first.append(row)
            same = len(first) - 1
            seen.setdefault(key, []).append(same)
        owner.append(same)
    return torch.tensor(first, dtype=torch.long), torch.tensor(owner, dtype=torch.long)


def output_rows(output: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of a model's raw output: a tensor's rows, a list (or tuple) of
    per-image results, or every batched tensor of a dict, tuple or Hugging Face output."""
    if isinstance(output, torch.Tensor):
        return output[index.to(output.device)]
    positions = index.tolist()
    if isinstance(output, (list, tuple)) and output and not isinstance(output[0], torch.Tensor):
        return type(output)(output[i] for i in positions) if isinstance(output, tuple) \
            else [output[i] for i in positions]
    if isinstance(output, tuple):
        return type(output)(output_rows(part, index) for part in output)
    if isinstance(output, Mapping) or hasattr(output, "keys"):
        rows = {k: output_rows(output[k], index) if isinstance(output[k], torch.Tensor) and output[k].ndim
                else output[k] for k in output.keys()}
        return rows if type(output) is dict else type(output)(**rows)
    raise InputError(f"cannot take rows of the model's output of type {type(output).__name__}")


def forward_rows(predict: Any, inputs: torch.Tensor, total: int) -> int:
    """Perturbed rows per model call when the method has no option for it:
    ``predict.batch_size``, else as many as the memory budget holds
    (:mod:`attribkit.torch.chunking`, measured by one forward of one image of
    ``predict.module``), at most :data:`DEFAULT_ROWS`."""
    return getattr(predict, "batch_size", None) or min(DEFAULT_ROWS, rows_per_chunk(
        measure(getattr(predict, "module", None), inputs, grad=False), total=total))


def masked_scores(predict: Callable[[torch.Tensor], Any], inputs: torch.Tensor,
                  masks: Any, target: ChunkTarget, *,
                  baseline: float | torch.Tensor = 0.0,
                  transform: Callable[[Any], Any] | None = None,
                  rows: int | None = None) -> torch.Tensor:
    """``s[b, n] = f_target(x_b * m_n + baseline_b * (1 - m_n))`` for every image and mask.

    Args:
        predict: ``batch -> raw output`` (e.g. a :class:`~attribkit.predict.Predict`).
        inputs: ``(B, C, H, W)`` images.
        masks: ``(N, 1 | C, H, W)`` keep-masks in [0, 1] (1 keeps the pixel): a tensor,
            or masks made on demand, any object with ``len()``, ``.shape`` and
            ``masks[index_tensor] -> (k, 1 | C, H, W)`` (RISE's, so that ``N`` masks never
            sit in memory at once).
        target: whose class indices are already fixed (``target.indices_for``
            on the unperturbed scores), a row-wise callable or a target object.
        baseline: what masked pixels become: a number or a tensor broadcastable
            to ``(B, C, H, W)`` (e.g. a blurred copy of the images).
        transform: applied to each raw output before the target reads it
            (e.g. ``lambda s: s.softmax(1)`` for probabilities).
        rows: perturbed images built and scored at a time (memory bound);
            default: :func:`forward_rows`.

    Rows of ``inputs`` holding the same image (a target that explains several things
    per image repeats it, :func:`distinct_rows`; with a per-row ``baseline``, the same
    baseline too) share their forwards: each distinct
    image goes through the model once per mask, and the target scores every row of
    that image on the same output. The ``U * N`` perturbed images (``U`` distinct
    images) are streamed image-major through the model in chunks of ``rows``; the
    result is ``(B, N)``.
    """
    if masks.ndim != 4 or tuple(masks.shape[-2:]) != tuple(inputs.shape[-2:]):
        raise InputError(f"masks must be (N, 1 or C, {inputs.shape[-2]}, {inputs.shape[-1]}), "
                         f"got {tuple(masks.shape)}")
    b, n = len(inputs), len(masks)
    if isinstance(masks, torch.Tensor):
        masks = masks.to(device=inputs.device, dtype=inputs.dtype)
    base = torch.as_tensor(baseline, dtype=inputs.dtype, device=inputs.device)
    base = base.expand_as(inputs) if base.ndim else base
    # rows are one image when their inputs, and their baselines if per row, are equal
    first, owner = distinct_rows(torch.cat([inputs, base], 1) if base.ndim else inputs)
    u = len(first)
    members = [torch.nonzero(owner == j).flatten() for j in range(u)]  # the rows of each image
    rows = rows or forward_rows(predict, inputs, u * n)
    out = None
    with progress(u * n, "perturbed images", unit="image") as bar:
        for start in range(0, u * n, rows):
            k = torch.arange(start, min(start + rows, u * n))
            image = first[k // n].to(inputs.device)
            mask = masks[(k % n).to(inputs.device)] if isinstance(masks, torch.Tensor) \
                else masks[k % n].to(device=inputs.device, dtype=inputs.dtype)
            fill = base[image] if base.ndim else base
            raw = predict(inputs[image] * mask + fill * (1 - mask))
            if transform is not None:
                raw = transform(raw)
            if u == b:  # every row its own image
                pair, row = torch.arange(len(k)), image.cpu()
            else:  # every row of each distinct image, scored on that image's output
                owners = (k // n).tolist()
                pair = torch.cat([torch.full((len(members[j]),), p) for p, j in enumerate(owners)])
                row = torch.cat([members[j] for j in owners])
                raw = output_rows(raw, pair)
            scores = target.select_rows(raw, row)
            if out is None:
                out = torch.empty(b, n, dtype=scores.dtype, device=scores.device)
            out[row.to(out.device), (k % n)[pair].to(out.device)] = scores.detach()
            bar.update(len(k))
    return out
