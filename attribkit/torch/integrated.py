"""Integrated gradients (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for
Deep Networks", arXiv:1703.01365), the built-in kernel for images.

For an input ``x``, a baseline ``x'`` and the target score ``S``::

    IG(x) = (x - x') * ∫_0^1 ∂S/∂x (x' + α (x - x')) dα
          ≈ (x - x') * Σ_k w_k ∂S/∂x (x' + α_k (x - x'))

with the nodes ``α_k`` and weights ``w_k`` of :func:`quadrature`. All ``n_steps``
points of every image of a chunk are rows of batched forwards (``internal_batch_size``
rows each; by default as many as the memory budget holds, see
:mod:`attribkit.torch.chunking`), one backward per forward.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from attribkit.errors import InvalidOptionError
from attribkit.progress import progress
from attribkit.torch.chunking import measure, rows_per_chunk
from attribkit.torch.gradients import reduce_channels
from attribkit.torch.runner import torch_kernel
from attribkit.torch.targets import ChunkTarget

METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(method: str, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``α_k`` in ``[0, 1]`` and weights ``w_k`` (float64, ``(n_steps,)``) of the
    path integral: Gauss–Legendre (Captum's default), or Riemann sums with the left,
    right or middle point of ``n_steps`` equal intervals (weights ``1/n``), or the
    trapezoid rule on ``n_steps`` equally spaced points ``0, 1/(n-1), ..., 1`` (weights
    ``1/(n-1)``, halved at both ends: they sum to 1)."""
    check_steps(method, n_steps)
    n = n_steps
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return torch.from_numpy((nodes + 1) / 2), torch.from_numpy(weights / 2)
    k = torch.arange(n, dtype=torch.float64)
    if method == "riemann_trapezoid":
        weights = torch.full((n,), 1 / (n - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return k / (n - 1), weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return (k + offset) / n, torch.full((n,), 1 / n, dtype=torch.float64)


def check_steps(method: Any, n_steps: Any) -> None:
    """``InvalidOptionError`` for an unknown ``integration_method`` or a bad ``n_steps``."""
    if method not in METHODS:
        raise InvalidOptionError(f"integration_method must be one of {', '.join(METHODS)}, got {method!r}")
    least = 2 if method == "riemann_trapezoid" else 1
    if not isinstance(n_steps, numbers.Integral) or isinstance(n_steps, bool) or n_steps < least:
        raise InvalidOptionError(f"n_steps must be an integer >= {least} for {method}, got {n_steps!r}")


def check_rows(internal_batch_size: Any) -> None:
    """``InvalidOptionError`` unless ``internal_batch_size`` is ``None`` or a positive integer."""
    if internal_batch_size is not None and (
            not isinstance(internal_batch_size, numbers.Integral) or isinstance(internal_batch_size, bool)
            or internal_batch_size < 1):
        raise InvalidOptionError(f"internal_batch_size must be a positive integer or None, "
                                 f"got {internal_batch_size!r}")


def image_baseline(baseline: Any, inputs: torch.Tensor) -> torch.Tensor:
    """The baseline as a tensor broadcast to ``inputs``: ``None`` is 0, a number that
    value everywhere, a tensor the shape of one input (``(C, H, W)`` or ``(1, C, H, W)``)."""
    if baseline is None:
        return torch.zeros_like(inputs)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        return torch.full_like(inputs, float(baseline))
    if isinstance(baseline, torch.Tensor):
        shape = tuple(baseline.shape)
        if shape not in (tuple(inputs.shape[1:]), (1, *inputs.shape[1:])):
            raise InvalidOptionError(f"baseline must have the shape of one input, {tuple(inputs.shape[1:])}; "
                                     f"got {shape} (explain images with different baselines in separate calls)")
        return baseline.detach().to(inputs.device, inputs.dtype).expand_as(inputs)
    raise InvalidOptionError(f"baseline must be None, a number or a tensor, got {type(baseline).__name__}")


@torch_kernel
def integrated_gradients(model, inputs, target: ChunkTarget, *, n_steps: int, integration_method: str,
                         baseline: Any, internal_batch_size: int | None, abs: bool,
                         take_max: bool) -> torch.Tensor:
    """``(x - x') * Σ_k w_k ∂S/∂x(x' + α_k (x - x'))`` per image (see the module docstring)."""
    check_steps(integration_method, n_steps)
    check_rows(internal_batch_size)
    x = inputs.detach()
    start = image_baseline(baseline, x)
    alphas, weights = (t.to(x.device, x.dtype) for t in quadrature(integration_method, n_steps))
    if not target.resolved:
        with torch.no_grad():
            target.indices_for(model(x))
    total = len(x) * n_steps
    step = internal_batch_size or rows_per_chunk(measure(model, x, grad=True), total=total)
    image = torch.arange(len(x), device=x.device).repeat_interleave(n_steps)
    k = torch.arange(n_steps, device=x.device).repeat(len(x))
    shape = (-1, *[1] * (x.ndim - 1))
    summed = torch.zeros_like(x)
    delta = x - start
    with progress(total, "integrated_gradients: rows", unit="row") as bar:
        for first in range(0, total, step):
            rows = slice(first, first + step)
            points = (start[image[rows]] + alphas[k[rows]].view(shape) * delta[image[rows]]).requires_grad_()
            score = target.select_rows(model(points), image[rows])
            (grad,) = torch.autograd.grad(score.sum(), points)
            summed.index_add_(0, image[rows], grad * weights[k[rows]].view(shape))
            bar.update(len(points))
    return reduce_channels(delta * summed, abs=abs, take_max=take_max)
