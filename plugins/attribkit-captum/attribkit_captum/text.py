"""Captum's methods on text: text kernels (:mod:`attribkit.text.runner`) for the table's
entries with a ``text`` field (imports torch and Captum).

- **Gradient methods** run Captum's ``Layer*`` counterpart on the model's token-embedding
  layer, on the token ids of a whole chunk, once per output token (``target=j`` of the
  ``(b, width)`` scores, :meth:`TextPlan.scores`), summed over the embedding dimension, as
  Captum's ``LLMGradientAttribution`` does: ``captum.integrated_gradients`` is
  ``LayerIntegratedGradients`` (baseline: the prompt's tokens replaced by the baseline
  token), ``captum.input_x_gradient`` is ``LayerGradientXActivation``, ``captum.saliency``
  is ``LayerGradientXActivation(multiply_by_inputs=False)`` (``abs=True``: ``Σ_d |∂s/∂E_td|``).
- **Perturbation methods** run Captum on each text's prompt tokens as
  ``LLMAttribution`` with ``TextTokenInput`` does: the input is a presence vector of
  ones, a token absent in a perturbation (≠ 1) is replaced by the baseline token id
  (``baseline=None``: the tokenizer's padding id, else 0), and the model scores the
  prompt followed by the continuation (teacher forcing, ``forward_in_tokens=False``).
  ``FeatureAblation``, ``Occlusion`` (``sliding_window_shapes``: tokens per window,
  clipped to the prompt), ``ShapleyValueSampling`` and ``ShapleyValues`` attribute every output
  token in one call (Captum's multi-output forward); ``Lime`` and ``KernelShap`` explain
  one scalar, so they run once per output token, with the same seed (the same samples).
  Stochastic methods are seeded per text (``seed``), as Captum called on that text alone.
"""

from __future__ import annotations

from typing import Any

import captum.attr as captum_attr
import torch

from attribkit.errors import InvalidOptionError
from attribkit.text.model import TextModel
from attribkit.text.occlusion import baseline_token
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan
from attribkit_captum.guards import captum_assertions, quiet, seeded
from attribkit_captum.table import Entry

#: Captum class -> (the class run on text, its constructor options) for the gradient methods.
LAYER = {"IntegratedGradients": ("LayerIntegratedGradients", {}),
         "InputXGradient": ("LayerGradientXActivation", {}),
         "Saliency": ("LayerGradientXActivation", {"multiply_by_inputs": False})}
#: Perturbation methods whose forward may return every output token's score at once.
MULTI_OUTPUT = ("FeatureAblation", "Occlusion", "ShapleyValueSampling", "ShapleyValues")
#: Presence vectors per forward when perturbations_per_eval is None.
FORWARD_ROWS = 32


def _positive(options: dict[str, Any], name: str, method: str) -> None:
    value = options.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise InvalidOptionError(f"{method} {name} must be a positive integer or None, got {value!r}")


def _check(entry: Entry, model: TextModel, plan: TextPlan, options: dict[str, Any]) -> int:
    for name in ("n_steps", "internal_batch_size", "perturbations_per_eval", "n_samples",
                 "sliding_window_shapes", "strides"):
        _positive(options, name, entry.method_name)
    return baseline_token(model, plan, options.get("baseline"))


def layer_kernel(entry: Entry):
    """The text kernel of a gradient entry (Captum's ``Layer*`` on the embedding layer)."""
    cls_name, init = LAYER[entry.cls]

    @text_kernel(autograd=True, thread_safe=False)
    def kernel(model: TextModel, plan: TextPlan, **options: Any) -> torch.Tensor:
        opts = dict(options)
        token = _check(entry, model, plan, opts)
        opts.pop("baseline", None)
        take_abs = opts.pop("abs", False)
        if "integration_method" in opts:
            opts["method"] = opts.pop("integration_method")

        def forward(ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            part = plan.rows(rows)
            return part.scores(model(ids, part.mask))

        explainer = getattr(captum_attr, cls_name)(forward, model.embedding, **init)
        rows = torch.arange(len(plan), device=plan.ids.device)
        if cls_name == "LayerIntegratedGradients":
            opts["baselines"] = torch.where(plan.prompt, torch.full_like(plan.ids, token), plan.ids)
        columns = []
        with quiet(), captum_assertions(entry.method_name, entry.text):
            for j in range(plan.width):
                attr = explainer.attribute(plan.ids, target=j, additional_forward_args=(rows,), **opts)
                columns.append((attr.abs() if take_abs else attr).detach().sum(-1))
        return torch.stack(columns, 1)

    kernel.__name__ = kernel.__qualname__ = entry.name
    kernel.__doc__ = f"Captum's {cls_name} on the token embeddings: {entry.description}."
    return kernel


def _one_text(plan: TextPlan, i: int) -> TextPlan:
    """Row ``i`` of ``plan`` without its padding."""
    row = plan.rows(torch.tensor([i]))
    n = int(plan.mask[i].sum())
    row.ids, row.mask, row.prompt = row.ids[:, :n], row.mask[:, :n], row.prompt[:, :n]
    return row


def perturbation_kernel(entry: Entry):
    """The text kernel of a perturbation entry (Captum on each text's presence vector)."""
    cls = getattr(captum_attr, entry.cls)
    multi = entry.cls in MULTI_OUTPUT

    @text_kernel(autograd=False, thread_safe=True)
    def kernel(model: TextModel, plan: TextPlan, **options: Any) -> torch.Tensor:
        opts = dict(options)
        token = _check(entry, model, plan, opts)
        opts.pop("baseline", None)
        seed = opts.pop("seed", None)
        init = {k: opts.pop(k) for k in ("interpretable_model", "similarity_func") if k in opts}
        if opts.get("perturbations_per_eval", 0) is None:
            opts["perturbations_per_eval"] = FORWARD_ROWS
        span = opts.pop("sliding_window_shapes", None)
        stride = opts.pop("strides", None)
        values = torch.zeros((len(plan), plan.width, plan.ids.shape[1]), device=plan.ids.device)
        for i in range(len(plan)):
            row = _one_text(plan, i)
            n = int(row.prompt_len[0])

            def forward(presence: torch.Tensor, row: TextPlan = row, n: int = n) -> torch.Tensor:
                copies = row.rows(torch.zeros(len(presence), dtype=torch.long))
                ids = copies.ids.clone()
                ids[:, :n] = torch.where(presence != 1, torch.full_like(ids[:, :n], token), ids[:, :n])
                return copies.scores(model(ids, copies.mask))

            explainer = cls(forward, **init)
            presence = torch.ones((1, n), device=plan.ids.device)
            if entry.cls == "Occlusion":  # a window longer than the prompt occludes all of it
                opts["sliding_window_shapes"] = (min(span, n),)
                opts["strides"] = min(stride or span, n)
            with quiet(), captum_assertions(entry.method_name, entry.text):
                if multi:
                    with seeded(seed, presence.device):
                        attr = explainer.attribute(presence, **opts)
                    values[i, :, :n] = attr.reshape(plan.width, n)
                else:
                    for j in range(plan.width):
                        with seeded(seed, presence.device):
                            values[i, j, :n] = explainer.attribute(presence, target=j, **opts).reshape(n)
        return values

    kernel.__name__ = kernel.__qualname__ = entry.name
    kernel.__doc__ = f"Captum's {entry.cls} on each text's prompt tokens: {entry.description}."
    return kernel


def build_text(entry: Entry):
    """The text kernel of ``entry`` (what the spec's ``text`` factory returns)."""
    return layer_kernel(entry) if entry.cls in LAYER else perturbation_kernel(entry)
