"""LRP through language models (AttnLRP, CP-LRP), the text kernel of ``lrp``.

Under the transformer composites of :mod:`attribkit.torch.lrp` (``attnlrp``: Achtibat
et al. 2024, arXiv:2402.05602; ``cp_lrp``: Ali et al. 2022), applied to the user's model
for the call: one forward with the token embeddings (the embedding layer's output) as
the leaf, then one backward per output token, starting from the explained **logit**
itself (``R = logit`` at that logit, 0 elsewhere). The transformer composites carry the
relevance in gradient form (:mod:`attribkit.torch.lrp.transformer_rules`): the backward
starts from 1 at the logit and what reaches the embeddings ``E`` is the modified gradient
``∂̃s/∂E``; a token's relevance is ``Σ_d E_td · ∂̃s/∂E_td``, as in LXT.

On a causal LM the explained quantity is the logit of each output token (as LXT does):
a log-probability or probability is not a single logit (it subtracts the log-sum over
the vocabulary) and LRP's rules start from one output neuron. The default ``score`` is
the logit for ``lrp``, the result's ``meta["score"]`` says ``"logit"``, and an explicit
``score="log_prob"`` or ``"prob"`` is an ``InvalidOptionError`` (the runner reads the
kernel's ``score`` attribute). A callable target's function
is differentiated as it is (relevance-preserving when it selects logits).

Hugging Face layers beyond the engine's (its module rules cover ``nn.Linear``,
LayerNorm, activations; its call-scoped mode the attention, sums, products, softmax):

- ``nn.Embedding`` and rotary-embedding modules: lookups of frozen weights (constants:
  the token embeddings are replaced by the leaf; positions get no relevance);
- transformers' ``Conv1D`` (GPT-2: ``x @ W + b``): an affine layer with the composite's
  linear rule;
- RMSNorm modules written by hand (``LlamaRMSNorm`` and its kind: ``weight`` and
  ``variance_epsilon`` or ``eps``): the RMS normalisation with ``σ`` constant, as
  ``F.rms_norm``, with the scale ``weight`` or (Gemma) ``1 + weight``, whichever one
  forward of a probe vector shows (another computation is an ``LRPRuleError``).

Any other leaf module goes to the engine's plan, so an unknown layer is still a named
:class:`~attribkit.torch.lrp.composites.LRPRuleError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from attribkit.errors import InvalidOptionError
from attribkit.text.model import TextModel
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan
from attribkit.torch.lrp.composites import TRANSFORMER_COMPOSITES, LRPRuleError, make_rules, no_rule_error
from attribkit.torch.lrp import engine
from attribkit.torch.lrp.rules import Affine, Rules
from attribkit.torch.lrp.transformer_mode import relevance_mode
from attribkit.torch.lrp.transformer_rules import affine, rms_norm

Forward = Callable[[torch.Tensor], torch.Tensor]


class TransposedLinear(Affine):
    """transformers' ``Conv1D``, ``y = x @ W + b`` with ``W`` of shape ``(in, out)``, as an
    :class:`~attribkit.torch.lrp.rules.Affine` for the linear rules."""

    def __init__(self, module: nn.Module) -> None:  # noqa: D107 - Affine's fields
        self.module = module
        self.weight = module.weight.detach()
        self.bias = None if module.bias is None else module.bias.detach()
        self.is_linear = True

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``x @ weight + bias``."""
        y = x @ weight
        return y if bias is None else y + bias

    def transpose(self, s: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``s @ weightᵀ``."""
        return s @ weight.T


def _is_rms_norm(module: nn.Module) -> bool:
    return (type(module).__name__.endswith("RMSNorm") and isinstance(getattr(module, "weight", None), torch.Tensor)
            and isinstance(getattr(module, "variance_epsilon", getattr(module, "eps", None)), float))


def _rms_scale(name: str, module: nn.Module, eps: float) -> torch.Tensor:
    """The scale ``w`` of an RMSNorm module, ``y = x / sqrt(mean(x²) + eps) · w``: its
    ``weight`` (LLaMA, Mistral, Qwen) or ``1 + weight`` (Gemma), told apart by one forward of
    a probe vector; :class:`LRPRuleError` when it computes neither."""
    weight = module.weight.detach()
    probe = torch.linspace(0.5, 1.5, weight.shape[-1], dtype=weight.dtype, device=weight.device)[None]
    with torch.no_grad():
        out = module.forward(probe)[0]
    base = probe[0] / (probe.pow(2).mean() + eps).sqrt()
    tolerance = max(1e-3, 8 * torch.finfo(weight.dtype).eps)
    for scale in (weight, 1 + weight):
        if torch.allclose(out, base * scale, rtol=tolerance, atol=tolerance * float(scale.abs().max())):
            return scale
    raise LRPRuleError(f"LRP has no rule for module {name!r} of type {type(module).__name__}: it does not compute "
                       "x / sqrt(mean(x²) + eps) * weight (or * (1 + weight)), the RMS normalisations covered")


def _rms_forward(name: str, module: nn.Module) -> Forward:
    fn = module.forward
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    scale = _rms_scale(name, module, eps)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, fn, scale.shape, scale, eps)
    return forward


def _affine_forward(layer: Affine, rules: Rules) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return affine(x, layer, rules.linear.epsilon)
    return forward


def text_overrides(model: nn.Module, rules: Rules) -> dict[nn.Module, Forward]:
    """The forward override of every leaf module of a language model that needs one
    (see the module docstring), or :class:`LRPRuleError` naming the first leaf no rule
    covers."""
    overrides: dict[nn.Module, Forward] = {}
    for name, module in model.named_modules():
        if next(module.children(), None) is not None or isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            continue  # a container (also an empty one): its children carry the rules
        kind = type(module).__name__
        if isinstance(module, nn.Embedding) or kind.endswith("RotaryEmbedding"):
            continue
        if kind == "Conv1D" and isinstance(getattr(module, "weight", None), torch.Tensor):
            overrides[module] = _affine_forward(TransposedLinear(module), rules)
        elif _is_rms_norm(module):
            overrides[module] = _rms_forward(name, module)
        else:
            try:
                overrides.update(engine.plan(module, rules, canonize=False))
            except LRPRuleError:
                raise no_rule_error(name, module, rules) from None
    return overrides


def check_options(_model: TextModel, *, composite: str = "attnlrp", epsilon: float = 1e-6,
                  stabilizer: float = 1e-6) -> None:
    """``InvalidOptionError`` for a composite that is not a transformer composite, or a bad
    ``epsilon`` / ``stabilizer``."""
    if composite not in TRANSFORMER_COMPOSITES:
        raise InvalidOptionError(f"LRP on text takes composite= {' or '.join(map(repr, TRANSFORMER_COMPOSITES))}, "
                                 f"got {composite!r} (the CNN composites have no rules for attention)")
    make_rules(composite, epsilon=epsilon, stabilizer=stabilizer)


@text_kernel(thread_safe=False, check=check_options)
def lrp(model: TextModel, plan: TextPlan, *, composite: str = "attnlrp", epsilon: float = 1e-6,
        stabilizer: float = 1e-6) -> torch.Tensor:
    """Relevance of each token for each explained logit of the rows, ``(b, width, L)``: one
    forward under ``composite`` (``"attnlrp"`` or ``"cp_lrp"``; ``epsilon`` for the linear
    layers, ``stabilizer`` for sums, products and normalisations), one backward per output
    token (see the module docstring)."""
    check_options(model, composite=composite, epsilon=epsilon, stabilizer=stabilizer)
    rules = make_rules(composite, epsilon=epsilon, stabilizer=stabilizer)
    embeds = model.embed(plan.ids, plan.mask).detach().requires_grad_()
    logit_plan = dataclasses.replace(plan, score="logit")
    with engine.overridden(text_overrides(model.model, rules)):
        with relevance_mode(model.model, rules):
            output = model(plan.ids, plan.mask, embeds)
        scores = logit_plan.scores(output)
        parts = []
        for j in range(scores.shape[1]):
            (grad,) = torch.autograd.grad(scores[:, j], embeds, grad_outputs=torch.ones_like(scores[:, j]),
                                          retain_graph=j + 1 < scores.shape[1], allow_unused=True)
            parts.append(embeds.new_zeros(embeds.shape[:2]) if grad is None else
                         torch.linalg.vecdot(grad, embeds.detach()))
    return torch.stack(parts, 1)


lrp.score = "logit"  # the one score it explains: meta's "score"; another explicit score= is refused
