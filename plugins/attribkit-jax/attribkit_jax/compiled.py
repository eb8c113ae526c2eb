"""The jitted functions of one model structure, compiled once and reused across calls.

``ak.explain`` wraps the model afresh on every call; the jitted functions live here,
cached on the model object (weakly: they go with it) and its structure key
(:attr:`~attribkit_jax.sources.Source.key`), so a second ``explain`` on the same model
and batch shape runs the compiled code directly. The variables are an argument of each
function, never a constant inside it.

One jitted call computes the scores and the gradient together; with ``classes=None`` the
target is ``argmax(stop_gradient(scores))`` inside the same trace (one forward, one
backward). A layer's gradient is that of the scores with respect to a zero ``ε`` added to
the layer's output at its last call; the shape of ``ε`` comes from ``jax.eval_shape`` at
trace time (no arithmetic).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from attribkit.errors import InputError, LayerError

from attribkit_jax.layers import Capture, Recorder
from attribkit_jax.sources import Source

#: id(owner) -> (weak reference to the owner, structure key -> Compiled); by identity, since
#: a bound linen module refuses ``hash``; an entry goes when its owner is collected
_cache: dict[int, tuple[weakref.ref, dict[Any, Compiled]]] = {}
_lock = threading.Lock()


def compiled_for(source: Source) -> Compiled:
    """The :class:`Compiled` of ``source``'s structure (cached on its owner when it can be)."""
    owner = source.owner
    with _lock:
        entry = _cache.get(id(owner))
        if entry is None or entry[0]() is not owner:
            try:
                ref = weakref.ref(owner, lambda _, key=id(owner): _forget(key))
            except TypeError:  # not weakly referenceable: compile for this call only
                return Compiled(source.apply)
            entry = _cache[id(owner)] = (ref, {})
        per_owner = entry[1]
        found = per_owner.get(source.key)
        if found is None:
            found = per_owner[source.key] = Compiled(source.apply)
        return found


def _forget(key: int) -> None:
    with _lock:
        entry = _cache.get(key)
        if entry is not None and entry[0]() is None:
            del _cache[key]


def _picked(scores: Any, classes: Any) -> Any:
    import jax
    import jax.numpy as jnp

    if scores.ndim != 2:
        raise InputError(f"the model's scores must be (B, K) for a class target, got shape {tuple(scores.shape)}")
    index = jnp.argmax(jax.lax.stop_gradient(scores), -1) if classes is None else classes
    return jnp.take_along_axis(scores, index[:, None], 1)[:, 0].sum()


class Compiled:
    """The jitted ``scores``, input gradients and layer passes of one ``apply``."""

    def __init__(self, apply: Callable[..., Any]) -> None:
        import jax

        self.apply = apply
        self.scores = jax.jit(lambda variables, x: apply(variables, x))
        self.gradients = jax.jit(self._gradients)
        self._layers: dict[tuple[str, str], Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def _gradients(self, variables: Any, x: Any, classes: Any) -> tuple[Any, Any]:
        import jax

        def target(x: Any) -> tuple[Any, Any]:
            scores = self.apply(variables, x)
            return _picked(scores, classes), scores

        (_, scores), grad = jax.value_and_grad(target, has_aux=True)(x)
        return scores, grad

    def layer(self, name: str, kind: str) -> Callable[..., Any]:
        """The jitted ``(variables, x, classes) -> (scores, activations, gradients)`` of layer
        ``name`` (``kind="gradients"``), or ``(variables, x) -> (scores, activations)``
        (``kind="activations"``)."""
        with self._lock:
            fn = self._layers.get((name, kind))
            if fn is None:
                import jax

                body = self._layer_gradients if kind == "gradients" else self._layer_activations
                fn = self._layers[(name, kind)] = jax.jit(lambda *args: body(name, *args))
            return fn

    def calls(self, variables: Any, x: Any, only: str | None = None) -> list[tuple[str, Any, Any]]:
        """``(name, shape, dtype)`` of every submodule call (``only``: of one layer) of a
        forward on ``x`` (an array or a ``jax.ShapeDtypeStruct``), found by ``jax.eval_shape``."""
        import jax

        recorder = Recorder(only)
        jax.eval_shape(lambda v, x: self.apply(v, x, recorder), variables, x)
        return recorder.calls

    def _last_call(self, name: str, variables: Any, x: Any) -> tuple[int, Any]:
        calls = self.calls(variables, x, only=name)
        if not calls:
            names = ", ".join(repr(n) for n in dict.fromkeys(n for n, _, _ in self.calls(variables, x)))
            if not names:
                raise LayerError(f"layer {name!r}: the model has no Flax submodules to read (layer methods "
                                 "need a linen or NNX module, or a function applying one)")
            raise LayerError(f"no layer {name!r} in the model's forward; its layers: {names}")
        _, shape, dtype = calls[-1]
        if shape is None:
            raise LayerError(f"layer {name!r} gives no array (a tuple or dict?): name a layer with one "
                             "array output")
        return len(calls) - 1, (shape, dtype)

    def _layer_gradients(self, name: str, variables: Any, x: Any, classes: Any) -> tuple[Any, Any, Any]:
        import jax
        import jax.numpy as jnp

        index, (shape, dtype) = self._last_call(name, variables, x)

        def target(eps: Any) -> tuple[Any, Any]:
            capture = Capture(name, index, eps)
            scores = self.apply(variables, x, capture)
            return _picked(scores, classes), (scores, capture.value)

        (_, (scores, acts)), grads = jax.value_and_grad(target, has_aux=True)(jnp.zeros(shape, dtype))
        return scores, acts, grads

    def _layer_activations(self, name: str, variables: Any, x: Any) -> tuple[Any, Any]:
        index, _ = self._last_call(name, variables, x)
        capture = Capture(name, index)
        scores = self.apply(variables, x, capture)
        return scores, capture.value
