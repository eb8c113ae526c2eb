"""Integrated gradients in embedding space (Sundararajan et al. 2017, arXiv:1703.01365),
the text kernel.

For a row with embeddings ``E`` (the embedding layer's output, ``(L, D)``), a baseline
``E'`` and each score ``s`` of the row (:meth:`TextPlan.scores`)::

    IG_t = Σ_d (E_td - E'_td) · Σ_k w_k ∂s/∂E_td (E' + α_k (E - E'))

with the nodes and weights of :func:`attribkit.torch.integrated.quadrature`. The
baseline differs from ``E`` on the prompt's positions only (a continuation's tokens
keep their embeddings): there it is the embedding of the ``baseline`` token (``None``:
the tokenizer's padding token, the plan's ``pad_id``), or zeros (``"zeros"``). This is
Captum's ``LayerIntegratedGradients`` on the embedding layer, as
``LLMGradientAttribution`` runs it with a ``TextTokenInput`` whose ``baselines`` is that
token (and no ``skip_tokens``).

All ``n_steps`` points of every text of the chunk are rows of one forward
(``internal_batch_size`` rows per forward when given), then one backward per output token.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from attribkit.errors import InvalidOptionError
from attribkit.text.gradients import expanded_gradients
from attribkit.text.model import TextModel
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan
from attribkit.torch.integrated import check_rows, check_steps, quadrature


def with_baseline(model: TextModel, plan: TextPlan, baseline: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E, E')``, each ``(b, L, D)``: the rows' embeddings, and the same with the prompt's
    positions replaced by the ``baseline`` token's embedding (``None``: ``plan.pad_id``) or
    by zeros (``"zeros"``); one (truncated) forward reads both."""
    if isinstance(baseline, str) and baseline == "zeros":
        embeds = model.embed(plan.ids, plan.mask).detach()
        return embeds, embeds.masked_fill(plan.prompt[..., None], 0.0)
    token = plan.pad_id if baseline is None else baseline
    ids = torch.cat([plan.ids, plan.ids.masked_fill(plan.prompt, int(token))])
    both = model.embed(ids, torch.cat([plan.mask, plan.mask])).detach()
    return both[:len(plan)], both[len(plan):]


def check_baseline(model: TextModel, baseline: Any) -> None:
    """``InvalidOptionError`` unless ``baseline`` is ``None``, ``"zeros"`` or a token id of
    the embedding layer's vocabulary."""
    if baseline is None or (isinstance(baseline, str) and baseline == "zeros"):
        return
    if not isinstance(baseline, numbers.Integral) or isinstance(baseline, bool):
        raise InvalidOptionError(f"baseline must be None (the padding token), a token id or 'zeros', "
                                 f"got {baseline!r}")
    size = getattr(model.embedding, "num_embeddings", None)
    if baseline < 0 or (size is not None and baseline >= size):
        raise InvalidOptionError(f"baseline token id {baseline} is out of range: the embedding layer "
                                 f"has {size} tokens")


def check_options(model: TextModel, *, n_steps: int = 50, integration_method: str = "gausslegendre",
                  baseline: Any = None, internal_batch_size: int | None = None) -> None:
    """``InvalidOptionError`` for a bad option of :func:`integrated_gradients`."""
    check_steps(integration_method, n_steps)
    check_rows(internal_batch_size)
    check_baseline(model, baseline)


@text_kernel(check=check_options)
def integrated_gradients(model: TextModel, plan: TextPlan, *, n_steps: int = 50,
                         integration_method: str = "gausslegendre", baseline: Any = None,
                         internal_batch_size: int | None = None) -> torch.Tensor:
    """Integrated gradients of each score to each token, summed over the embedding
    dimension, ``(b, width, L)`` (see the module docstring)."""
    check_options(model, n_steps=n_steps, integration_method=integration_method, baseline=baseline,
                  internal_batch_size=internal_batch_size)
    embeds, start = with_baseline(model, plan, baseline)
    delta = embeds - start
    alphas, weights = (t.to(embeds.device, embeds.dtype) for t in quadrature(integration_method, n_steps))

    def points(text: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return start[text] + alphas[k, None, None] * delta[text]

    def reduce(grad: torch.Tensor, text: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (grad * delta[text]).sum(-1) * weights[k, None]

    return expanded_gradients(model, plan, n_steps, points, reduce, internal_batch_size)
