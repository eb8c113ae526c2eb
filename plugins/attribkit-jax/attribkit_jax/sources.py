"""What a JAX model is made of: a pure ``apply(variables, x, hook)`` and its ``variables``.

Every kind of model becomes a :class:`Source`, so that one set of jitted functions
(:mod:`attribkit_jax.compiled`) serves them all, with the variables a jit *argument*
(never baked into the compiled code) and the model's structure closed over:

- a Flax **linen** module bound to its variables (``module.bind(variables)``, unbound by
  ``module.unbind()``), or an unbound module with ``params=variables``: ``module.apply``;
- a Flax **NNX** module: ``nnx.split`` of an eval-mode view (``nnx.view(...,
  deterministic=True, use_running_average=True)``, a new object: the user's flags stay as
  they are), merged again inside each call, so whatever the forward writes lands on a
  private copy;
- a **function** ``f(params, x)`` (``params=None``: ``f(x)``).

``hook(name, output) -> output`` is called after each submodule's ``__call__`` (the root's
excluded) when given: :mod:`attribkit_jax.layers` reads and perturbs layer outputs with it.
Linen submodules are reached by ``flax.linen.intercept_methods`` (also inside a function
that applies a linen module), NNX ones by a call-scoped subclass of the private copy's
submodules (:func:`attribkit_jax.nnx_hooks.nnx_hooked`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Hashable
from typing import Any

from attribkit.errors import InvalidOptionError

from attribkit_jax.nnx_hooks import Hook

#: keyword -> value for inference mode, passed to a linen module whose ``__call__`` has it
INFERENCE_KWARGS = {"train": False, "training": False, "deterministic": True, "use_running_average": True}



@dataclasses.dataclass(frozen=True)
class Source:
    """A model as ``apply(variables, x, hook=None) -> scores``.

    Attributes:
        kind: ``"linen"``, ``"nnx"`` or ``"function"``.
        apply: the pure forward (traced inside ``jax.jit``).
        variables: the pytree passed as ``apply``'s first argument.
        owner: the object the compiled functions are cached on (weakly).
        key: what else the compiled code depends on (hashable).
        modules: the submodule names known without running the model (NNX: all of them;
            linen: those holding variables), in the model's own order.
        complete: whether ``modules`` is every submodule (NNX).
        separator: how names join their path (``"/"`` linen, ``"."`` NNX).
        root: the module, to look layer objects up in.
    """

    kind: str
    apply: Callable[..., Any]
    variables: Any
    owner: Any
    key: Hashable
    modules: tuple[str, ...] = ()
    complete: bool = False
    separator: str = "/"
    root: Any = None


def is_linen(model: Any) -> bool:
    """Whether ``model`` is a Flax linen module (bound or not)."""
    return _has_base(model, "flax.linen.")


def is_nnx(model: Any) -> bool:
    """Whether ``model`` is a Flax NNX module."""
    return _has_base(model, "flax.nnx.")


def _has_base(model: Any, prefix: str) -> bool:
    return any((cls.__module__ or "").startswith(prefix) for cls in type(model).__mro__)


def frozen_kwargs(kwargs: dict[str, Any]) -> Hashable:
    """A hashable stand-in for ``kwargs`` (part of the compiled functions' key)."""
    return tuple(sorted((k, repr(v)) for k, v in kwargs.items()))


def linen_source(module: Any, variables: Any, call_kwargs: dict[str, Any] | None) -> Source:
    """A linen module (bound, or unbound with its ``variables``) as a :class:`Source`."""
    if variables is None:
        if getattr(module, "scope", None) is None:
            raise InvalidOptionError(f"{type(module).__name__} is an unbound Flax linen module: pass its variables "
                                     "(explain(..., params=variables)) or bind it (module.bind(variables))")
        owner = module
        module, variables = module.unbind()
    else:
        if getattr(module, "scope", None) is not None:
            raise InvalidOptionError(f"{type(module).__name__} is bound to its variables already; pass params= "
                                     "only with an unbound module")
        owner = module
    kwargs = _inference_kwargs(module, call_kwargs)

    def apply(variables: Any, x: Any, hook: Hook | None = None) -> Any:
        if hook is None:
            return module.apply(variables, x, **kwargs)
        with linen_interceptor(hook):
            return module.apply(variables, x, **kwargs)

    return Source("linen", apply, variables, owner, ("linen", frozen_kwargs(kwargs)),
                  modules=_variable_modules(variables), separator="/", root=module)


def _inference_kwargs(module: Any, given: dict[str, Any] | None) -> dict[str, Any]:
    """``INFERENCE_KWARGS`` that ``module.__call__`` takes, overridden by ``given``."""
    try:
        names = inspect.signature(type(module).__call__).parameters
    except (TypeError, ValueError):
        names = {}
    return {**{k: v for k, v in INFERENCE_KWARGS.items() if k in names}, **(given or {})}


def _variable_modules(variables: Any) -> tuple[str, ...]:
    """The paths of the linen submodules that hold variables, in order of appearance."""
    found: dict[str, None] = {}

    def walk(tree: Any, path: tuple[str, ...]) -> None:
        if hasattr(tree, "items"):
            for key, value in tree.items():
                if hasattr(value, "items"):
                    if path:
                        found.setdefault("/".join(path), None)
                    walk(value, (*path, str(key)))
                elif path:
                    found.setdefault("/".join(path), None)

    for collection in (variables.values() if hasattr(variables, "values") else ()):
        walk(collection, ())
    return tuple(found)


def linen_interceptor(hook: Hook):
    """``flax.linen.intercept_methods`` calling ``hook("a/b", output)`` after each submodule's
    ``__call__`` (the root's excluded)."""
    import flax.linen as nn

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "__call__":
            return out
        path = context.module.path
        return hook("/".join(path), out) if path else out

    return nn.intercept_methods(interceptor)


def nnx_source(model: Any, call_kwargs: dict[str, Any] | None) -> Source:
    """An NNX module as a :class:`Source` (see the module docstring)."""
    from flax import nnx

    from attribkit_jax.nnx_hooks import nnx_hooked

    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    graphdef, state = nnx.split(view)
    kwargs = dict(call_kwargs or {})

    def apply(state: Any, x: Any, hook: Hook | None = None) -> Any:
        copy = nnx.merge(graphdef, state)
        if hook is not None:
            nnx_hooked(copy, hook)
        return copy(x, **kwargs)

    names = tuple(".".join(map(str, path)) for path, _ in nnx.iter_modules(view) if path)
    return Source("nnx", apply, state, model, ("nnx", graphdef, frozen_kwargs(kwargs)),
                  modules=names, complete=True, separator=".", root=model)


def function_source(fn: Callable[..., Any], params: Any, call_kwargs: dict[str, Any] | None) -> Source:
    """``fn(params, x)`` (``params=None``: ``fn(x)``) as a :class:`Source`; the layers are the
    linen modules it applies."""
    kwargs = dict(call_kwargs or {})
    if params is None and _positional(fn) >= 2:
        raise InvalidOptionError(f"{getattr(fn, '__name__', 'the function')} takes (params, x): pass "
                                 "params= to explain, or wrap it as attribkit_jax.Model(fn, params)")

    def call(params: Any, x: Any) -> Any:
        return fn(x, **kwargs) if params is None else fn(params, x, **kwargs)

    def apply(params: Any, x: Any, hook: Hook | None = None) -> Any:
        if hook is None:
            return call(params, x)
        try:
            interceptor = linen_interceptor(hook)
        except ImportError:  # no Flax: a plain function has no submodules
            return call(params, x)
        with interceptor:
            return call(params, x)

    return Source("function", apply, params, fn, ("function", params is None, frozen_kwargs(kwargs)))


def _positional(fn: Callable[..., Any]) -> int:
    """How many positional parameters ``fn`` requires (0 when it cannot be read)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in parameters)


def source_of(model: Any, params: Any, call_kwargs: dict[str, Any] | None) -> Source:
    """The :class:`Source` of any model the ``"jax"`` backend takes."""
    from attribkit_jax import Model

    if isinstance(model, Model):
        if params is not None and model.params is not None:
            raise InvalidOptionError("params= was given, but the Model holds its params already")
        kwargs = {**model.call_kwargs, **(call_kwargs or {})}
        return source_of(model.fn, model.params if params is None else params, kwargs)
    if is_linen(model):
        return linen_source(model, params, call_kwargs)
    if is_nnx(model):
        if params is not None:
            raise InvalidOptionError("an NNX module holds its own variables: params= is for linen modules "
                                     "and functions f(params, x)")
        return nnx_source(model, call_kwargs)
    if callable(model):
        return function_source(model, params, call_kwargs)
    raise InvalidOptionError(f"the jax backend takes a Flax linen or NNX module or a function f(params, x), "
                             f"got {type(model).__name__}")
