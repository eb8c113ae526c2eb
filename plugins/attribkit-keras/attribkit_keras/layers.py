"""A Keras model's layers: finding one by name, and reading its output during a forward.

Layers are named as ``model.get_layer(name)`` names them; a layer of a nested model (a
backbone inside a functional model) as ``"outer/inner"``. Its output is read by a
call-scoped wrapper of the layer's ``call`` (:func:`capture`): set on the layer instance for
the duration of one attribkit call and removed afterwards, even on error — the Keras
counterpart of a PyTorch forward hook. The model's graph, weights and configuration are not
edited, and it works the same for Sequential, functional (skip connections included) and
subclassed models. A layer called more than once in one forward (a shared layer) has no
single output to explain and is refused.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from attribkit.errors import LayerError

_MISSING = object()


def children(model: Any) -> list[Any]:
    """The model's own layers, without its ``InputLayer``."""
    return [layer for layer in getattr(model, "layers", []) if type(layer).__name__ != "InputLayer"]


def _paths(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, layer)`` of every layer, nested models' layers as ``"outer/inner"``."""
    for layer in children(model):
        path = f"{prefix}{layer.name}"
        yield path, layer
        if hasattr(layer, "layers"):
            yield from _paths(layer, f"{path}/")


def output_rank(layer: Any) -> int | None:
    """The rank of the layer's symbolic output (Sequential and functional models), else ``None``."""
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, TypeError):
        return None


def resolve(model: Any, layer: Any) -> str:
    """The path of ``layer``: a name, an ``"outer/inner"`` path, a layer object of the model,
    or ``None`` for the last top-level layer with a 4-D output."""
    paths = dict(_paths(model))
    if layer is None:
        for candidate in reversed(children(model)):
            if output_rank(candidate) == 4:
                return candidate.name
        raise LayerError(f"model {model.name!r} has no layer with a known 4-D output (a subclassed model "
                         f"has no graph to read it from): name the layer; its layers: {_listing(paths)}")
    if isinstance(layer, str):
        if layer in paths:
            return layer
        raise LayerError(f"model {model.name!r} has no layer {layer!r}; its layers: {_listing(paths)}")
    for path, candidate in paths.items():
        if candidate is layer:
            return path
    raise LayerError(f"layer= must be a layer name of model {model.name!r} (or one of its layer objects), "
                     f"got {layer!r}; its layers: {_listing(paths)}")


def _listing(paths: dict[str, Any]) -> str:
    return ", ".join(paths) or "none"


def find(model: Any, path: str) -> Any:
    """The layer at ``path`` (a name :func:`resolve` gave)."""
    return dict(_paths(model))[path]


class Capture:
    """What :func:`capture` saw: the layer's outputs in the forward(s) run inside it.
    ``delta``, when set, is added to the layer's output (the JAX backend differentiates
    with respect to it at zero)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.outputs: list[Any] = []
        self.delta: Any = None

    def reset(self, delta: Any = None) -> None:
        """Forget the outputs seen so far; add ``delta`` to the next ones."""
        self.outputs, self.delta = [], delta

    def single(self) -> Any:
        """The one output of the layer in the forward (then forgotten); a :class:`LayerError`
        otherwise."""
        outputs, self.outputs = self.outputs, []
        if not outputs:
            raise LayerError(f"layer {self.path!r} was not called in the model's forward")
        if len(outputs) > 1:
            raise LayerError(f"layer {self.path!r} is called {len(outputs)} times in one forward "
                             "(a shared layer): its output is ambiguous; name a layer called once")
        output = outputs[0]
        if not hasattr(output, "shape"):
            raise LayerError(f"layer {self.path!r} gives {type(output).__name__}, not one tensor: name a "
                             "layer with a single output")
        return output


@contextlib.contextmanager
def capture(layer: Any, seen: Capture) -> Iterator[Capture]:
    """Record in ``seen`` (and perturb, see :class:`Capture`) ``layer``'s output in the forwards
    run in the body."""
    seen.reset()
    own = layer.__dict__.get("call", _MISSING)
    original = layer.call

    @functools.wraps(original)
    def call(*args: Any, **kwargs: Any) -> Any:
        output = original(*args, **kwargs)
        seen.outputs.append(output)
        return output if seen.delta is None else output + seen.delta

    layer.__dict__["call"] = call  # the instance's dict: no Keras attribute tracking
    try:
        yield seen
    finally:
        if own is _MISSING:
            layer.__dict__.pop("call", None)
        else:
            layer.__dict__["call"] = own
