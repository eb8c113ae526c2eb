"""attribkit-jax: JAX / Flax models behind ``ak.explain``, ``ak.as_predict`` and ``ak.evaluate``.

The entry point ``jax = "attribkit_jax"`` (group ``attribkit``) registers this module; its
``register_backends`` hook registers the ``"jax"`` backend. Nothing here imports JAX or
Flax: :func:`claims` reads the model's class names only, and the wrapper
(:mod:`attribkit_jax.model`) is imported on first use. Models:

- a Flax linen module bound to its variables (``module.bind(variables)``), or an unbound
  one with ``params=variables`` (or ``Model(module, variables)``);
- a Flax NNX module (run on a private copy in eval mode: your module is only read);
- a jitted function (``jax.jit(f)``), or any function with ``backend="jax"``: ``f(x)``, or
  ``f(params, x)`` with ``params=``; :class:`Model` holds ``f`` and its ``params`` for the
  calls that take no options (``ak.as_predict``, ``ak.evaluate``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from attribkit.backends import BackendSpec
from attribkit.hookspecs import hookimpl

__all__ = ["Model", "claims", "register_backends", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'attribkit[jax]'"

#: modules whose classes (anywhere in a model's MRO) mark a JAX model
_ROOTS = ("jax", "jaxlib", "flax")


class Model:
    """A JAX model as one object: ``fn(params, x) -> scores`` (``params=None``: ``fn(x)``),
    or a Flax linen module with its variables (``Model(module, variables)``).

    ``call_kwargs`` are passed to every call (``{"train": False}``). A ``Model`` needs no
    options, so ``ak.as_predict(Model(f, params))`` and ``ak.evaluate`` take it as it is.
    """

    def __init__(self, fn: Callable[..., Any], params: Any = None, *,
                 call_kwargs: Mapping[str, Any] | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"Model(fn, params): fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.params = params
        self.call_kwargs = dict(call_kwargs or {})

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"Model({name}, params={'None' if self.params is None else '...'})"


def claims(model: Any) -> bool:
    """Whether ``model`` is a JAX model: a :class:`Model`, or an object with a class from
    ``jax``, ``jaxlib`` or ``flax`` in its MRO (Flax linen and NNX modules, jitted functions).
    Imports nothing."""
    if isinstance(model, Model):
        return True
    for cls in type(model).__mro__:
        if (cls.__module__ or "").partition(".")[0] in _ROOTS:
            return True
    return False


@hookimpl
def register_backends(register):
    """Register the ``"jax"`` backend (the wrapper is imported on first use)."""
    register(BackendSpec(
        name="jax", claims=claims, factory="attribkit_jax.model:wrap",
        options={"params": None, "layout": "NHWC", "call_kwargs": None},
        requires=("jax",), extra=INSTALL_HINT,
        description="JAX / Flax models: linen (bound), NNX, f(params, x)"))
