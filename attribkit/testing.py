"""Test helpers for attribkit and for plugin authors (needs torch)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from attribkit.torch.guard import ModelState


def _snapshot_values(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def model_differences(before: ModelState, weights: dict[str, torch.Tensor],
                      grads: list[torch.Tensor | None], model: nn.Module) -> list[str]:
    """Everything that differs between the snapshot and ``model`` now, as sentences."""
    now = ModelState.capture(model)
    problems = []
    if now.global_hooks != before.global_hooks:
        problems.append(f"global module hooks changed: {before.global_hooks} -> {now.global_hooks}")
    names = {id(m): n for n, m in model.named_modules()}
    for m, hooks_then, hooks_now, t_then, t_now in zip(before.modules, before.hooks, now.hooks,
                                                      before.training, now.training):
        label = names.get(id(m), "?") or "<root>"
        if hooks_then != hooks_now:
            problems.append(f"hooks of {label} changed: {hooks_then} -> {hooks_now}")
        if t_then != t_now:
            problems.append(f"{label}.training changed: {t_then} -> {t_now}")
    pnames = {id(p): n for n, p in model.named_parameters()}
    for p, r_then, r_now, g_then, g_obj_then, g_now in zip(
            before.params, before.requires_grad, now.requires_grad, grads, before.grads, now.grads):
        label = pnames.get(id(p), "?")
        if r_then != r_now:
            problems.append(f"{label}.requires_grad changed: {r_then} -> {r_now}")
        if (g_then is None) != (g_now is None) or g_obj_then is not g_now:
            problems.append(f"{label}.grad was replaced or created")
        elif g_then is not None and not torch.equal(g_then, g_now):
            problems.append(f"{label}.grad values changed")
    after = _snapshot_values(model)
    for key, value in weights.items():
        if key not in after or not torch.equal(value, after[key]):
            problems.append(f"parameter or buffer {key} changed")
    return problems


@contextlib.contextmanager
def assert_model_untouched(model: nn.Module) -> Iterator[None]:
    """Assert that the body leaves ``model`` as it was: hooks (module and global),
    train/eval flags, ``requires_grad``, ``.grad`` (object and values), weights
    and buffers. Works when the body raises (the exception propagates after the check)::

        with assert_model_untouched(model), pytest.raises(TargetError):
            ak.explain(model, x, target=10_000)
    """
    before = ModelState.capture(model)
    weights = _snapshot_values(model)
    grads = [None if g is None else g.detach().clone() for g in before.grads]
    try:
        yield
    finally:
        problems = model_differences(before, weights, grads, model)
        if problems:
            raise AssertionError("the model was changed:\n  " + "\n  ".join(problems))
