"""RRRLoss: Right for the Right Reasons (Ross, Hughes & Doshi-Velez 2017)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attribkit.errors import GradientModeError, InputError
from attribkit.training.base import LossOutput, _Recorder, _WatchingLoss, _reduce


class RRRLoss(_WatchingLoss):
    r"""Right for the Right Reasons (Ross, Hughes & Doshi-Velez 2017, arXiv:1703.03717).

    The paper trains with

    .. math:: L(\theta, X, y, A) = \sum_n \sum_k -y_{nk}\log \hat y_{nk}
              + \lambda_1 \sum_n \sum_d \Big(A_{nd}\,
                \frac{\partial}{\partial x_{nd}} \sum_{k=1}^{K} \log \hat y_{nk}\Big)^2
              + \lambda_2 \sum_i \theta_i^2

    where ``A_nd = 1`` on input dimensions annotated as **irrelevant** and
    :math:`\hat y = \mathrm{softmax}(f(x))`. This module is the middle term: the
    right-reasons penalty, ``weight`` being :math:`\lambda_1`. The input gradient
    is taken with ``torch.autograd.grad(..., create_graph=True)``, so the penalty
    is differentiable w.r.t. the parameters (a double backward). The model must
    return logits (``log_softmax`` is applied here).

    The cross-entropy is the caller's (``F.cross_entropy(out.logits, y)``), and the
    :math:`\lambda_2` weight decay is left to the optimiser's ``weight_decay`` (the
    paper's L2 term is ordinary weight decay; keeping it in the optimiser avoids
    decaying it twice and works with AdamW's decoupled form).

    ``reduction="mean"`` (default) averages the per-image sums over the batch, which
    keeps :math:`\lambda_1`'s balance against PyTorch's *mean* cross-entropy the same
    as the paper's balance of two sums; ``"sum"`` is the paper's literal sum.

    Call ``loss(images, irrelevant)`` -> :class:`LossOutput` ``(logits, penalty,
    maps)`` with ``maps`` the input gradient ``(B, C, H, W)``; ``irrelevant`` is
    ``(B, H, W)`` (broadcast over channels), ``(B, 1, H, W)`` or ``(B, C, H, W)``,
    1 where the model should not look. ``images`` that do not require grad are
    replaced by a detached leaf that does.
    """

    def __init__(self, model: nn.Module, *, weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(model, weight, reduction)

    def _prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if not x.requires_grad and torch.is_grad_enabled():
            x = x.detach().requires_grad_(True)
        return x

    @staticmethod
    def _annotation(irrelevant: Any, x: torch.Tensor) -> torch.Tensor:
        a = torch.as_tensor(irrelevant, device=x.device).to(x.dtype)
        if a.ndim == 3:
            a = a[:, None]
        if a.ndim != 4 or a.shape[0] not in (1, len(x)) or a.shape[1] not in (1, x.shape[1]) \
                or a.shape[-2:] != x.shape[-2:]:
            raise InputError(f"irrelevant must be (B, H, W), (B, 1, H, W) or (B, C, H, W) matching the input "
                             f"{tuple(x.shape)}, got {tuple(a.shape)}")
        return a

    def _compute(self, rec: _Recorder, irrelevant: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, logits = rec.inputs, rec.logits
        if not x.requires_grad or logits.grad_fn is None:
            raise GradientModeError("RRRLoss: the forward ran without autograd (torch.no_grad()?)")
        a = self._annotation(irrelevant, x)
        summed = F.log_softmax(logits, dim=1).sum()
        (grads,) = torch.autograd.grad(summed, x, create_graph=True)
        per_image = ((a * grads) ** 2).flatten(1).sum(1)
        return self.weight * _reduce(per_image, self.reduction), grads

    def penalty(self, irrelevant: Any) -> torch.Tensor:
        """The weighted penalty of the last forward recorded by :meth:`watch`
        (whose inputs the watch made require grad)."""
        rec = self._recorded()
        try:
            return self._compute(rec, irrelevant)[0]
        finally:
            rec.clear()

    def forward(self, images: torch.Tensor, irrelevant: Any) -> LossOutput:
        """One forward of the model -> ``LossOutput(logits, penalty, maps)``; detached
        values under ``torch.no_grad()``."""
        if not isinstance(images, torch.Tensor) or images.ndim < 2:
            raise InputError("images must be a batch tensor")
        grad_on = torch.is_grad_enabled()
        with torch.enable_grad(), self.watch():
            logits = self.model(images)
            penalty, grads = self._compute(self._recorded(), irrelevant)
        if not grad_on:
            logits, penalty, grads = logits.detach(), penalty.detach(), grads.detach()
        return LossOutput(logits, penalty, grads)
