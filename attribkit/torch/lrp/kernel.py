"""The ``lrp`` method: one forward and one backward with the composite's rules.

The relevance at the model's output is the output times the target's gradient there,
``R_out = out ⊙ ∂S/∂out``: for a class, the target logit (0 elsewhere); for a
:class:`~attribkit.targets.Region`, each masked pixel's own logit; for a linear callable
such as ``2 · logit``, that score. So with LRP-0 rules and no biases the input relevance
sums to the explained score (conservation, Bach et al. 2015).

The default composite, ``"auto"``, is ``attnlrp`` on a transformer (a model with
attention modules) and ``epsilon_plus_flat`` otherwise; a composite named by the user is
used as named. The transformer composites run the model's forward under
:func:`~attribkit.torch.lrp.transformer_mode.relevance_mode` and carry the relevance in
gradient form (:mod:`~attribkit.torch.lrp.transformer_rules`): the backward starts from 1
at the score, and the relevance is the input times what reaches it.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from attribkit.torch.lrp.composites import is_transformer, make_rules
from attribkit.torch.lrp.engine import composite_applied
from attribkit.torch.lrp.transformer_mode import relevance_mode
from attribkit.torch.runner import torch_kernel
from attribkit.torch.targets import ChunkTarget


def relevance(model: torch.nn.Module, inputs: torch.Tensor, target: ChunkTarget, *,
              composite: str = "auto", canonize: bool = True, **params: Any) -> torch.Tensor:
    """LRP relevance of ``inputs`` for the target scores, shaped like ``inputs``.

    ``params``: ``epsilon``, ``gamma``, ``alpha``, ``beta``, ``low``, ``high``,
    ``stabilizer`` (see :func:`~attribkit.torch.lrp.composites.make_rules`).
    """
    rules = make_rules(default_composite(model, composite), **params)
    with composite_applied(model, rules, canonize=canonize):
        x = inputs.detach().requires_grad_(True)
        with relevance_mode(model, rules):
            scores = model(x)
        score = target.select(scores)
        if rules.attention is None:  # the rules send relevance: R_out = out ⊙ ∂S/∂out
            for output in _output_tensors(scores):
                output.register_hook(functools.partial(torch.mul, output.detach()))
            return torch.autograd.grad(score, x, grad_outputs=torch.ones_like(score))[0]
        # gradient form (transformer composites): G_out = R_out / score = 1, R_in = x ⊙ G_in
        (grad,) = torch.autograd.grad(score, x, grad_outputs=torch.ones_like(score))
    return grad.mul_(inputs)


def _output_tensors(output: Any) -> list[torch.Tensor]:
    """The tensors of a model's raw output (a tensor, a tuple or list, a dict, a Hugging Face
    output) through which the score's gradient can flow."""
    if isinstance(output, torch.Tensor):
        return [output] if output.requires_grad else []
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    return [t for value in values for t in _output_tensors(value)]


def default_composite(model: torch.nn.Module, composite: str) -> str:
    """``composite``; ``"auto"`` is ``attnlrp`` on a transformer
    (:func:`~attribkit.torch.lrp.composites.is_transformer`), else ``epsilon_plus_flat``."""
    if composite != "auto":
        return composite
    return "attnlrp" if is_transformer(model) else "epsilon_plus_flat"


@torch_kernel(thread_safe=False)
def lrp(model, inputs, target, *, composite: str, canonize: bool, epsilon: float, gamma: float,
        alpha: float, beta: float, low: Any, high: Any, stabilizer: float) -> torch.Tensor:
    """Layer-wise relevance propagation (Bach et al. 2015, PLoS ONE 10(7):e0130140;
    Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview"):
    ``R_in = x' * W'^T (R_out / stab(z'))`` layer by layer, with the rules of
    ``composite`` (:mod:`attribkit.torch.lrp.composites`), computed as one
    gradient-overridden backward."""
    return relevance(model, inputs, target, composite=composite, canonize=canonize,
                     epsilon=epsilon, gamma=gamma, alpha=alpha, beta=beta, low=low, high=high,
                     stabilizer=stabilizer)
