"""Leave the user's model exactly as it was, also when threads share it.

:func:`model_guard` is the one guard every torch kernel runs under: it puts
the model in eval mode and, on the way out (normal return or exception),
removes every hook added meanwhile and restores each module's train/eval
flag and each parameter's ``requires_grad`` and ``.grad``.

Threads
-------
Calls on one model from several threads share one guard per model: the first
call to enter records the model's state and switches it to eval mode, the
last one to leave restores it (a per-call restore would race: a call that
started while another had already switched to eval would "restore" eval).
Calls that only use thread-keyed hooks (:mod:`attribkit.torch.capture`) and
leave the modules alone enter in *shared* mode and run concurrently;
``exclusive=True`` (the default, for code that registers ordinary hooks or
sets attributes on modules, such as Captum's methods) waits until no other
thread is inside the guard of that model, and keeps the others out until it
leaves. A thread already inside the guard re-enters it freely; a nested
exclusive request on a thread that holds shared access first gives it up, so
two such threads cannot deadlock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
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


class _SharedGuard:
    """The guard state of one model while any thread is inside :func:`model_guard`:
    a readers-writer lock (``readers`` hold shared access, ``writer`` exclusive),
    each thread's nesting depth, and the state recorded by the first to enter."""

    def __init__(self) -> None:
        self.cond = threading.Condition(_registry_lock)
        self.readers: set[int] = set()
        self.writer: int | None = None
        self.waiting_writers = 0
        self.depth: dict[int, int] = {}
        self.users = 0  # threads inside or waiting to enter
        self.state: ModelState | None = None

    def acquire(self, me: int, exclusive: bool) -> str:
        """Take shared or exclusive access for thread ``me``; returns what to undo."""
        if self.writer == me:
            return "none"
        if exclusive:
            upgraded = me in self.readers
            self.readers.discard(me)
            self.waiting_writers += 1
            try:
                self.cond.wait_for(lambda: self.writer is None and not self.readers)
            finally:
                self.waiting_writers -= 1
            self.writer = me
            return "upgraded" if upgraded else "exclusive"
        if me in self.readers:
            return "none"
        self.cond.wait_for(lambda: self.writer is None and not self.waiting_writers)
        self.readers.add(me)
        return "shared"

    def release(self, me: int, taken: str) -> None:
        if taken in ("exclusive", "upgraded"):
            self.writer = None
        if taken == "upgraded":
            self.readers.add(me)
        elif taken == "shared":
            self.readers.discard(me)
        self.cond.notify_all()


_registry_lock = threading.RLock()
_guards: dict[int, _SharedGuard] = {}  # id(model) -> guard, only while some thread is inside


@contextlib.contextmanager
def model_guard(model: Any, *, exclusive: bool = True) -> Iterator[None]:
    """Run the body with ``model`` in eval mode; restore everything afterwards.

    The state is restored in ``finally`` by the last thread to leave (see the
    module docstring), so hooks never outlive a call even when the model or the
    kernel raises. ``exclusive=False`` is for code whose hooks are thread-keyed
    and which changes nothing on the modules: such calls run concurrently.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    me = threading.get_ident()
    with _registry_lock:
        guard = _guards.setdefault(id(model), _SharedGuard())
        guard.users += 1
        try:
            taken = guard.acquire(me, exclusive)
        except BaseException:
            _leave(model, guard)
            raise
        if not guard.depth:
            guard.state = ModelState.capture(model)
            model.eval()
        guard.depth[me] = guard.depth.get(me, 0) + 1
    try:
        yield
    finally:
        with _registry_lock:
            guard.depth[me] -= 1
            if not guard.depth[me]:
                del guard.depth[me]
            if not guard.depth:
                state, guard.state = guard.state, None
                state.restore()
            guard.release(me, taken)
            _leave(model, guard)


def _leave(model: nn.Module, guard: _SharedGuard) -> None:
    guard.users -= 1
    if not guard.users:
        del _guards[id(model)]
