"""Gradient kernels on token embeddings (text kernels, see :mod:`attribkit.text.runner`).

The gradient of each score of a row (:meth:`TextPlan.scores`) with respect to the
embedding layer's output ``E`` (``(L, D)`` per row): one forward per chunk, one
backward per output token.

- ``saliency``: ``‖∂s/∂E_t‖₂`` per token (Simonyan et al. 2014; the L2 norm over the
  embedding dimension, as in Li et al. 2016, "Visualizing and Understanding Neural
  Models in NLP").
- ``input_x_gradient``: ``Σ_d E_td · ∂s/∂E_td`` (Shrikumar et al. 2016; what Captum's
  ``LayerGradientXActivation`` on the embedding layer gives, summed over ``d``).
"""

from __future__ import annotations

import torch

from attribkit.text.model import TextModel
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan


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


@text_kernel
def saliency(model: TextModel, plan: TextPlan) -> torch.Tensor:
    """L2 norm of the score's gradient per token embedding, ``(b, width, L)``."""
    return embedding_gradients(model, plan, model.embed(plan.ids)).norm(dim=-1)


@text_kernel
def input_x_gradient(model: TextModel, plan: TextPlan) -> torch.Tensor:
    """Embedding times gradient, summed over the embedding dimension, ``(b, width, L)``."""
    embeds = model.embed(plan.ids).detach()
    return (embedding_gradients(model, plan, embeds) * embeds[:, None]).sum(-1)
