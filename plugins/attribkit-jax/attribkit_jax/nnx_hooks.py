"""NNX hooks: each submodule of a private NNX copy passes its output through a hook.

The copy's submodules get a subclass whose ``__call__`` calls the original and then the hook
(one subclass per class, cached); the copy is dropped after the call, so the user's module is
never touched and two threads never see each other's hooks (:mod:`attribkit_jax.layers`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Hook = Callable[[str, Any], Any]  # hook(layer name, output) -> output

_subclasses: dict[type, type] = {}
_subclasses_lock = threading.Lock()
_HOOK = "_attribkit_jax_hook"


def _hooked_class(cls: type) -> type:
    """``cls`` with a ``__call__`` that passes the output through the instance's hook."""
    with _subclasses_lock:
        sub = _subclasses.get(cls)
        if sub is None:
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                out = cls.__call__(self, *args, **kwargs)
                name, hook = vars(self)[_HOOK]
                return hook(name, out)

            sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                               "__qualname__": cls.__qualname__})
            _subclasses[cls] = sub
        return sub


def nnx_hooked(copy: Any, hook: Hook) -> None:
    """Make every submodule of ``copy`` (a private NNX copy) call ``hook(name, output)``."""
    from flax import nnx

    for path, module in list(nnx.iter_modules(copy)):
        if path and any("__call__" in vars(cls) for cls in type(module).__mro__[:-1]):  # not type.__call__
            vars(module)[_HOOK] = (".".join(map(str, path)), hook)
            object.__setattr__(module, "__class__", _hooked_class(type(module)))
