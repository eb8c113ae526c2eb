"""Leave the user's model exactly as it was.

:func:`model_guard` is the one guard every torch kernel runs under: it puts
the model in eval mode and, on the way out (normal return or exception),
removes every hook added meanwhile and restores each module's train/eval
flag and each parameter's ``requires_grad`` and ``.grad``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module

MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)
GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


def _hook_keys(owner: Any, names: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(getattr(owner, name, {})) for name in names}


def _drop_new_keys(owner: Any, before: dict[str, tuple[int, ...]]) -> None:
    for name, keys in before.items():
        hooks = getattr(owner, name, None)
        if hooks is None:
            continue
        for key in [k for k in hooks if k not in keys]:
            del hooks[key]


@dataclasses.dataclass
class ModelState:
    """What attribkit promises not to change about a model.

    ``capture`` records it, ``restore`` puts it back, ``differences`` lists
    what changed (weights and buffers included) for test assertions.
    """

    modules: list[nn.Module]
    training: list[bool]
    full_backward_flags: list[Any]
    hooks: list[dict[str, tuple[int, ...]]]
    global_hooks: dict[str, tuple[int, ...]]
    params: list[nn.Parameter]
    requires_grad: list[bool]
    grads: list[torch.Tensor | None]

    @classmethod
    def capture(cls, model: Any) -> "ModelState":
        modules = list(model.modules()) if isinstance(model, nn.Module) else []
        params = list(model.parameters()) if isinstance(model, nn.Module) else []
        return cls(
            modules=modules,
            training=[m.training for m in modules],
            full_backward_flags=[getattr(m, "_is_full_backward_hook", None) for m in modules],
            hooks=[_hook_keys(m, MODULE_HOOK_DICTS) for m in modules],
            global_hooks=_hook_keys(_module, GLOBAL_HOOK_DICTS),
            params=params,
            requires_grad=[p.requires_grad for p in params],
            grads=[p.grad for p in params],
        )

    def restore(self) -> None:
        """Remove hooks added since capture; restore modes, ``requires_grad`` and ``.grad``."""
        _drop_new_keys(_module, self.global_hooks)
        for m, keys, training, flag in zip(self.modules, self.hooks, self.training,
                                           self.full_backward_flags):
            _drop_new_keys(m, keys)
            m.training = training
            if hasattr(m, "_is_full_backward_hook"):
                m._is_full_backward_hook = flag
        for p, requires, grad in zip(self.params, self.requires_grad, self.grads):
            if p.requires_grad != requires:
                p.requires_grad_(requires)
            if p.grad is not grad:
                p.grad = grad


@contextlib.contextmanager
def model_guard(model: Any, *, eval_mode: bool = True) -> Iterator[ModelState]:
    """Run the body with ``model`` in eval mode; restore everything afterwards.

    The state is restored in ``finally``, so hooks never outlive a call even
    when the model or the kernel raises.
    """
    state = ModelState.capture(model)
    try:
        if eval_mode and isinstance(model, nn.Module):
            model.eval()
        yield state
    finally:
        state.restore()
