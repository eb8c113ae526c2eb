"""A JAX model behind :class:`attribkit.backends.FrameworkModel`: :func:`wrap`.

NumPy batches in the model's layout go in; NumPy scores, gradients and layer arrays come
out. The forward and backward run in JAX, jitted (:mod:`attribkit_jax.compiled`); the
model is only read: a linen module's variables are passed, never bound anew or updated,
an NNX module runs as a private copy in eval mode.

Inference mode: an NNX module is viewed with ``deterministic=True,
use_running_average=True`` (Dropout off, BatchNorm on its running statistics); a linen
module whose ``__call__`` takes ``train``, ``training``, ``deterministic`` or
``use_running_average`` gets the inference value of each; anything else goes in
``call_kwargs`` (``explain(..., call_kwargs={"mode": "eval"})``). A linen model that still
updates its ``batch_stats`` or asks for a ``dropout`` key is refused with that hint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from attribkit.backends.layout import check_layout
from attribkit.backends.protocol import LayerGradients
from attribkit.errors import AttribkitError, InvalidOptionError, LayerError

from attribkit_jax.compiled import compiled_for
from attribkit_jax.layers import normalise, probe_inputs, spatial_calls, unique, unknown_layer
from attribkit_jax.sources import Source, source_of


def wrap(model: Any, params: Any = None, layout: str = "NHWC",
         call_kwargs: Mapping[str, Any] | None = None) -> JaxModel:
    """``model`` (a Flax linen or NNX module, a function, an :class:`attribkit_jax.Model`) as a
    :class:`~attribkit.backends.FrameworkModel`: ``params`` for a function ``f(params, x)``
    or an unbound linen module, ``layout`` of its input, ``call_kwargs`` for every call."""
    if call_kwargs is not None and not isinstance(call_kwargs, Mapping):
        raise InvalidOptionError(f"call_kwargs must be a dict of keyword arguments, got {type(call_kwargs).__name__}")
    return JaxModel(source_of(model, params, None if call_kwargs is None else dict(call_kwargs)),
                    check_layout(layout))


class JaxModel:
    """A :class:`~attribkit.sources.Source` as a framework model (see the module docstring)."""

    framework = "jax"

    def __init__(self, source: Source, layout: str = "NHWC") -> None:
        self.source = source
        self.layout = layout
        self.compiled = compiled_for(source)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The ``(B, K)`` scores of ``x``."""
        with _flax_hints():
            return np.array(self.compiled.scores(self.source.variables, x))  # writable: torch.as_tensor reads it

    def input_gradients(self, x: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ``∂ Σ_b scores[b, classes[b]] / ∂x`` from one jitted ``value_and_grad``."""
        with _flax_hints():
            scores, grad = self.compiled.gradients(self.source.variables, x, _classes(classes))
        return np.asarray(scores), np.asarray(grad)

    def resolve_layer(self, layer: Any, x: np.ndarray | None = None) -> str:
        """The canonical name of ``layer`` (see :mod:`attribkit_jax.layers`); ``None``: the last
        submodule with a spatial output, found on ``x``'s shape when given, else on a probe
        image of the channels the first convolution reads."""
        name = None if layer is None else normalise(self.source, layer)
        if name is not None and (name in self.source.modules or self.source.complete):
            if name not in self.source.modules:
                raise unknown_layer(name, self.source.modules, self.source)
            return name
        calls = self._probe(x)
        if calls is None:
            if name is not None:  # a linen submodule without variables: checked on the first call
                return name
            raise LayerError("the layer could not be chosen without an input of the model's shape: name it "
                             f"(layer=...); submodules with variables: {', '.join(map(repr, self.source.modules))}")
        names = unique(n for n, _, _ in calls)
        if name is not None:
            if name not in names:
                raise unknown_layer(name, names, self.source)
            return name
        spatial = spatial_calls(calls, self.layout)
        if not spatial:
            if not names:
                raise unknown_layer("<automatic>", names, self.source)
            raise LayerError(f"no submodule of the model has a spatial {self.layout} output; name the layer: "
                             f"{', '.join(map(repr, names))}")
        return spatial[-1]

    def _probe(self, x: np.ndarray | None) -> list[tuple[str, Any, Any]] | None:
        """Every submodule call on ``x``'s shape, else on the first probe shape the model
        accepts; ``None`` when none does."""
        import jax

        shapes = [x.shape] if x is not None else probe_inputs(self.source, self.layout)
        dtype = np.float32 if x is None else x.dtype
        for shape in shapes:
            try:
                with _flax_hints():
                    return self.compiled.calls(self.source.variables, jax.ShapeDtypeStruct(shape, dtype))
            except (InvalidOptionError, LayerError):
                raise
            except Exception:  # noqa: BLE001 - a probe shape the model does not take: try the next
                if x is not None:
                    raise
        return None

    def layer_gradients(self, x: np.ndarray, layer: str, classes: np.ndarray | None) -> LayerGradients:
        """Scores, the activations of ``layer`` and their gradients from one jitted pass."""
        with _flax_hints():
            scores, acts, grads = self.compiled.layer(layer, "gradients")(self.source.variables, x, _classes(classes))
        return LayerGradients(np.asarray(scores), np.asarray(acts), np.asarray(grads))

    def layer_activations(self, x: np.ndarray, layer: str) -> LayerGradients:
        """Scores and the activations of ``layer`` from one jitted forward."""
        with _flax_hints():
            scores, acts = self.compiled.layer(layer, "activations")(self.source.variables, x)
        return LayerGradients(np.asarray(scores), np.asarray(acts))


def _classes(classes: np.ndarray | None) -> np.ndarray | None:
    return None if classes is None else np.asarray(classes, dtype=np.int32)


@contextlib.contextmanager
def _flax_hints() -> Iterator[None]:
    """Flax's errors of a model left in training mode, as an ``InvalidOptionError`` with the fix;
    attribkit's own errors raised while tracing, without the note JAX appends to them."""
    try:
        yield
    except AttribkitError as exc:
        message = str(exc).split(_JAX_NOTE)[0]
        if message == str(exc):
            raise
        raise type(exc)(message) from None
    except Exception as exc:
        hint = _training_mode(exc)
        if hint is None:
            raise
        raise InvalidOptionError(hint) from exc


_JAX_NOTE = "\n-----"  # JAX's "removed its internal frames" note on errors raised while tracing


def _training_mode(exc: Exception) -> str | None:
    name = type(exc).__name__
    if name == "ModifyScopeVariableError":
        what = "updates its variables (BatchNorm in training mode?)"
    elif name == "InvalidRngError":
        what = "asks for a random key (Dropout in training mode?)"
    else:
        return None
    return (f"the model {what} during the call: attribkit explains inference; pass the keyword that "
            f"switches it off, e.g. explain(..., call_kwargs={{'train': False}}) ({str(exc).splitlines()[0]})")
