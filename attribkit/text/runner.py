"""``explain`` on text, written once for every text kernel.

A text kernel is ``kernel(model: TextModel, plan: TextPlan, **options) -> (b, width, L)``:
for each row of the chunk ``plan``, the attribution of each of its ``width`` scores
(:meth:`TextPlan.scores`) to each of its ``L`` positions. :func:`explain_text` does the
rest: inputs to a :class:`~attribkit.text.inputs.TextBatch`, the embedding layer, the
target's plan, the model guard, chunks of ``batch_size`` texts, and the
:class:`~attribkit.text.result.TokenAttribution` (values outside the prompt and on
padding are zero; ``values`` is the sum over output tokens).

Kernels mark themselves with :func:`text_kernel` (``autograd``, ``thread_safe``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from attribkit.errors import GradientModeError, InvalidOptionError
from attribkit.registry import MethodSpec
from attribkit.text.inputs import text_batch
from attribkit.text.model import TextModel
from attribkit.text.result import TokenAttribution
from attribkit.text.targets import plan_for
from attribkit.torch.guard import model_guard
from attribkit.torch.runner import chunks


def text_kernel(kernel: Callable | None = None, *, autograd: bool = True,
                thread_safe: bool = True, check: Callable[..., None] | None = None) -> Callable:
    """Mark a text kernel: ``autograd=False`` for forward-only kernels (they run under
    ``torch.no_grad``); ``thread_safe=False`` when it changes anything on the model
    (then calls on one model take turns); ``check(model: TextModel, **options)`` raises
    for bad option values before the inputs are read or the model runs."""
    if kernel is None:
        return functools.partial(text_kernel, autograd=autograd, thread_safe=thread_safe, check=check)
    kernel.autograd = autograd
    kernel.thread_safe = thread_safe
    kernel.check = check
    return kernel


def explain_text(model: Any, inputs: Any, target: Any, *, spec: MethodSpec, batch_size: int | None = None,
                 tokenizer: Any = None, embedding: Any = None, max_new_tokens: int = 1,
                 skip_special_tokens: bool = False, score: str | None = None,
                 **options: Any) -> TokenAttribution:
    """Explain ``model`` on text ``inputs`` with the text kernel of ``spec`` (see
    :func:`attribkit.explain` and ``docs/text.md``)."""
    text_spec = spec.for_text()
    if text_spec is None:
        from attribkit.host import get_host

        raise InvalidOptionError(
            f"method {spec.name!r} has no kernel for text inputs; text methods: "
            + ", ".join(s.name for s in get_host().registry if s.text is not None))
    bound = text_spec.bind_options(options)
    kernel = text_spec.load()
    fixed = getattr(kernel, "score", None)  # a kernel that explains one quantity only (lrp: the logit)
    if score is not None and fixed is not None and score != fixed:
        raise InvalidOptionError(f"method {spec.name!r} explains the {fixed} (score={fixed!r}), not "
                                 f"score={score!r}")
    chunks(1, batch_size)  # checks batch_size before any work
    autograd = getattr(kernel, "autograd", True)
    if autograd and torch.is_inference_mode_enabled():
        raise GradientModeError("text gradient methods need autograd, which torch.inference_mode() "
                                "disables; call explain outside it (torch.no_grad() is fine)")
    text_model = TextModel(model, embedding)
    if getattr(kernel, "check", None) is not None:
        kernel.check(text_model, **bound)
    batch = text_batch(inputs, tokenizer, device=text_model.device)
    grad = torch.enable_grad() if autograd else torch.no_grad()
    with model_guard(model, exclusive=not getattr(kernel, "thread_safe", False)), grad:
        plan = plan_for(text_model, batch, target, score=score, max_new_tokens=max_new_tokens)
        parts = [kernel(text_model, plan.take(start, stop), **bound).detach()
                 for start, stop in chunks(len(batch), batch_size)]
    matrix = torch.cat(parts) if len(parts) > 1 else parts[0]
    width = batch.ids.shape[1]
    keep = batch.mask & ~batch.special if skip_special_tokens else batch.mask
    matrix = matrix[:, :, :width] * keep[:, None, :].to(matrix.dtype)
    continuation = plan.kind == "continuation"
    if continuation:
        matrix = matrix * plan.out_mask[:, :, None].to(matrix.dtype)
    vocab = batch.vocab
    return TokenAttribution(
        values=matrix.sum(1), method=spec.name,
        target=None if plan.classes is None else plan.classes.cpu(),
        meta={"options": bound, "batch_size": batch_size, "embedding": text_model.embedding_name,
              "kind": plan.kind, "score": getattr(kernel, "score", plan.score) if continuation else "logit",
              **({"continuation": [r[m].tolist() for r, m in zip(plan.outputs.cpu(), plan.out_mask.cpu())]}
                 if continuation else {})},
        tokens=batch.tokens, mask=keep.cpu(), special=batch.special.cpu(),
        matrix=matrix if continuation else None,
        output_tokens=[vocab.tokens(r[m].tolist()) for r, m in zip(plan.outputs.cpu(), plan.out_mask.cpu())]
        if continuation else None,
        texts=batch.texts)
