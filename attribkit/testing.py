"""Test helpers for attribkit and for plugin authors (needs torch).

- :func:`assert_model_untouched`: the model guarantee, as an assertion.
- :class:`TinyCNN`, :class:`RaiseOnCall`, :func:`as_users_have_it`: models for
  safety grids (normal run / bad target / a model that raises).
- :func:`isolated_host`: a plugin host rebuilt from the current environment.
- :func:`forward_rows`: the rows of each forward of a model (chunking and cost tests).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from attribkit.host import reset_host
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


class TinyCNN(nn.Module):
    """conv -> BatchNorm -> ReLU -> conv -> ReLU -> GAP -> Dropout -> linear: small,
    with layers whose train/eval mode matters, and no ``Flatten`` module (LRP has
    no rule for it)."""

    def __init__(self, classes: int = 5, widths: tuple[int, int] = (8, 16)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]), nn.ReLU(),
            nn.Conv2d(widths[0], widths[1], 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(widths[1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


class RaiseOnCall(nn.Module):
    """Wraps a model and raises ``RuntimeError("boom in forward")`` inside forward,
    after the inner model (and any hooks on it) ran, from call number ``n`` on.
    Calls are counted in a list mutated in place, so no module attribute changes."""

    def __init__(self, inner: nn.Module, n: int = 1) -> None:
        super().__init__()
        self.inner = inner
        self.n = n
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        out = self.inner(x)
        if len(self.calls) >= self.n:
            raise RuntimeError("boom in forward")
        return out


def as_users_have_it(model: nn.Module) -> nn.Module:
    """Put a :class:`TinyCNN`-shaped model in a state users really have: training
    mode, the first conv frozen, a stale ``.grad`` on the classifier, a user forward
    hook and a user backward hook. Returns the model."""
    model.train()
    model.features[0].weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    model.features[3].register_forward_hook(lambda m, i, o: None)
    model.fc.register_full_backward_hook(lambda m, gi, go: None)
    return model


@contextlib.contextmanager
def isolated_host() -> Iterator[None]:
    """A plugin host rebuilt (on first use) from the current ``sys.path``, without the
    strict / disable variables, and forgotten afterwards (use it in an autouse fixture)."""
    saved = {k: os.environ.pop(k) for k in ("ATTRIBKIT_STRICT_PLUGINS", "ATTRIBKIT_DISABLE_PLUGINS")
             if k in os.environ}
    reset_host()
    try:
        yield
    finally:
        reset_host()
        os.environ.update(saved)


@contextlib.contextmanager
def forward_rows(model: nn.Module) -> Iterator[list[int]]:
    """The number of rows of each forward of ``model`` made in the body (a list that
    fills as they run; the hook is removed on exit)."""
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
    try:
        yield rows
    finally:
        handle.remove()
