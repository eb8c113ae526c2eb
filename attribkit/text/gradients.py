"""Gradient kernels on token embeddings (text kernels, see :mod:`attribkit.text.runner`).

The gradient of each score of a row (:meth:`TextPlan.scores`) with respect to the
embedding layer's output ``E`` (``(L, D)`` per row): one forward per chunk of rows, one
backward per output token.

- ``saliency``: ``‖∂s/∂E_t‖₂`` per token (Simonyan et al. 2014; the L2 norm over the
  embedding dimension, as in Li et al. 2016, "Visualizing and Understanding Neural
  Models in NLP").
- ``input_x_gradient``: ``Σ_d E_td · ∂s/∂E_td`` (Shrikumar et al. 2016; what Captum's
  ``LayerGradientXActivation`` on the embedding layer gives, summed over ``d``).
- ``smoothgrad``: saliency averaged over ``n_samples`` noisy copies of the prompt's
  embeddings (Smilkov et al. 2017): ``mean_j ‖g_j‖₂`` (``abs=True``, the default) or
  ``‖mean_j g_j‖₂`` (``abs=False``), ``g_j = ∂s/∂E_t`` at ``E + ε_j``, ``ε_j ~ N(0, σ²)``
  on the prompt's positions only, ``σ = stdev · std(E[prompt])`` per text.

Integrated gradients live in :mod:`attribkit.text.integrated`; both use
:func:`expanded_gradients`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import torch

from attribkit.errors import InvalidOptionError
from attribkit.text.model import TextModel
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan
from attribkit.torch.chunking import measure_row, rows_per_chunk
from attribkit.torch.integrated import check_rows

def embedding_gradients(model: TextModel, plan: TextPlan, embeds: torch.Tensor) -> torch.Tensor:
    """``(b, width, L, D)``: the gradient of each of the rows' scores w.r.t. ``embeds``
    (``(b, L, D)``, the embedding layer's output put in place of its own)."""
    embeds = embeds.detach().requires_grad_()
    scores = plan.scores(model(plan.ids, plan.mask, embeds))
    grads = []
    for j in range(scores.shape[1]):
        (grad,) = torch.autograd.grad(scores[:, j].sum(), embeds, retain_graph=j + 1 < scores.shape[1],
                                      allow_unused=True)
        grads.append(torch.zeros_like(embeds) if grad is None else grad)
    return torch.stack(grads, 1)


def expanded_gradients(model: TextModel, plan: TextPlan, copies: int,
                       points: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       reduce: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                       rows: int | None) -> torch.Tensor:
    """Gradients at ``copies`` embeddings of each row, summed per row.

    Row ``r`` of the expanded batch is copy ``k[r]`` of text ``text[r]`` (text-major); its
    embeddings are ``points(text, k)`` ``(r, L, D)``. ``rows`` expanded rows (``None``:
    all) run in one forward, then one backward per output token ``j`` gives the gradient
    ``g`` ``(r, L, D)`` w.r.t. them; ``reduce(g, text, k)`` (``(r, ...)``) is summed over
    the copies of each text. Returns ``(b, width, ...)``.
    """
    b = len(plan)
    device = plan.ids.device
    text = torch.arange(b, device=device).repeat_interleave(copies)
    k = torch.arange(copies, device=device).repeat(b)
    step = rows or _rows_in_budget(model, plan, points(text[:1], k[:1]), len(text))
    total: torch.Tensor | None = None
    for first in range(0, len(text), step):
        t, c = text[first:first + step], k[first:first + step]
        sub = plan.rows(t)
        embeds = points(t, c).detach().requires_grad_()
        scores = sub.scores(model(sub.ids, sub.mask, embeds))
        parts = []
        for j in range(plan.width):
            (grad,) = torch.autograd.grad(scores[:, j].sum(), embeds, retain_graph=j + 1 < plan.width,
                                          allow_unused=True)
            parts.append(reduce(torch.zeros_like(embeds) if grad is None else grad, t, c))
        part = torch.stack(parts, 1)
        if total is None:
            total = part.new_zeros((b, *part.shape[1:]))
        total.index_add_(0, t, part)
    return total


def _rows_in_budget(model: TextModel, plan: TextPlan, first: torch.Tensor, total: int) -> int:
    """Expanded rows per forward that the memory budget holds (see
    :mod:`attribkit.torch.chunking`), measured on one forward of the first row."""
    first = first.detach()
    row_bytes = measure_row(model.model, lambda: model(plan.ids[:1], plan.mask[:1], first), first, grad=True)
    return rows_per_chunk(row_bytes, total=total)


@text_kernel
def saliency(model: TextModel, plan: TextPlan) -> torch.Tensor:
    """L2 norm of the score's gradient per token embedding, ``(b, width, L)``."""
    return embedding_gradients(model, plan, model.embed(plan.ids, plan.mask)).norm(dim=-1)


@text_kernel
def input_x_gradient(model: TextModel, plan: TextPlan) -> torch.Tensor:
    """Embedding times gradient, summed over the embedding dimension, ``(b, width, L)``."""
    embeds = model.embed(plan.ids, plan.mask).detach()
    return (embedding_gradients(model, plan, embeds) * embeds[:, None]).sum(-1)


def prompt_noise(plan: TextPlan, embeds: torch.Tensor, n_samples: int, stdev: float,
                 seed: int | None) -> torch.Tensor:
    """``(b, n_samples, L, D)`` Gaussian noise on the prompt's positions (0 elsewhere), of
    standard deviation ``stdev · std(E_i[prompt_i])`` for text ``i`` (``std`` over all
    values of its prompt's embeddings, without Bessel's correction). With ``seed``, text
    ``i``'s ``(n_samples, prompt_len_i, D)`` values are ``torch.randn`` from a CPU generator
    seeded with ``seed`` alone, so a text gets the same noise in any batch or chunk."""
    b, length, dim = embeds.shape
    noise = embeds.new_zeros((b, n_samples, length, dim))
    for i, n in enumerate(plan.prompt_len.tolist()):
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        values = torch.randn((n_samples, n, dim), generator=generator, dtype=torch.float32)
        sigma = stdev * embeds[i, :n].detach().double().std(correction=0)
        noise[i, :, :n] = (values.to(embeds.device, torch.float64) * sigma).to(embeds.dtype)
    return noise


def check_noise(n_samples: Any, stdev: Any, seed: Any) -> None:
    """``InvalidOptionError`` for a bad ``n_samples``, ``stdev`` or ``seed``."""
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise InvalidOptionError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not isinstance(stdev, numbers.Real) or isinstance(stdev, bool) or not stdev >= 0:
        raise InvalidOptionError(f"stdev must be a number >= 0, got {stdev!r}")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
        raise InvalidOptionError(f"seed must be a non-negative integer or None, got {seed!r}")


def _check_smoothgrad(_model: TextModel, *, abs: bool = True, n_samples: int = 25, stdev: float = 0.15,
                      seed: int | None = None, internal_batch_size: int | None = None) -> None:
    check_noise(n_samples, stdev, seed)
    check_rows(internal_batch_size)


@text_kernel(check=_check_smoothgrad)
def smoothgrad(model: TextModel, plan: TextPlan, *, abs: bool = True, n_samples: int = 25,
               stdev: float = 0.15, seed: int | None = None,
               internal_batch_size: int | None = None) -> torch.Tensor:
    """Saliency averaged over ``n_samples`` noisy copies of the prompt's embeddings,
    ``(b, width, L)``: ``mean_j ‖g_j‖₂`` (``abs``) or ``‖mean_j g_j‖₂`` (see the module
    docstring and :func:`prompt_noise`); ``internal_batch_size`` noisy rows per forward
    (``None``: as many as the memory budget holds)."""
    check_noise(n_samples, stdev, seed)
    check_rows(internal_batch_size)
    embeds = model.embed(plan.ids, plan.mask).detach()
    noisy = embeds[:, None] + prompt_noise(plan, embeds, n_samples, stdev, seed)

    def reduce(grad: torch.Tensor, _text: torch.Tensor, _k: torch.Tensor) -> torch.Tensor:
        return grad.norm(dim=-1) / n_samples if abs else grad / n_samples

    total = expanded_gradients(model, plan, n_samples, lambda t, k: noisy[t, k], reduce, internal_batch_size)
    return total if abs else total.norm(dim=-1)
