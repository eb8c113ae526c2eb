"""Layers of a JAX model: their names, the automatic choice, and reading or perturbing one.

A layer is a submodule, named by its path: ``"block1/Conv_0"`` for linen (Flax's own
variable paths), ``"features.layers.0"`` for NNX (attribute access); either separator is
accepted, and so is the submodule object itself. The model is never edited:

- the layer's output is read (and, for its gradient, a zero array ``ε`` of its shape is
  added to it: ``∂S/∂ε`` is ``∂S/∂A``) by a hook that runs inside one traced call
  (:mod:`attribkit_jax.sources`);
- for NNX, the hook is installed on a private copy merged inside the call: each of the
  copy's submodules gets a subclass whose ``__call__`` calls the original and then the
  hook (one subclass per class, cached; the copy is dropped after the call), so two
  threads explaining one model never see each other's hooks and nothing needs restoring.

A layer called more than once per forward is read at its **last** call (PyTorch's rule in
attribkit). The automatic layer (``layer=None``) is the last submodule, in order of
completion, whose output is ``(B, h, w, C)`` with ``h·w > 1``; it is found by an abstract
trace (``jax.eval_shape``: no arithmetic) on an input of the batch's shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from attribkit.errors import LayerError

from attribkit_jax.sources import Source


class Recorder:
    """A hook recording ``(name, shape)`` of every array output (``only``: of one layer)."""

    def __init__(self, only: str | None = None) -> None:
        self.only = only
        self.calls: list[tuple[str, tuple[int, ...] | None, Any]] = []

    def __call__(self, name: str, out: Any) -> Any:
        if self.only is None or name == self.only:
            shape = getattr(out, "shape", None)
            self.calls.append((name, None if shape is None else tuple(shape), getattr(out, "dtype", None)))
        return out


class Capture:
    """A hook keeping the output of call number ``index`` of layer ``name`` (plus ``eps``)."""

    def __init__(self, name: str, index: int, eps: Any = None) -> None:
        self.name, self.index, self.eps = name, index, eps
        self.count = 0
        self.value = None

    def __call__(self, name: str, out: Any) -> Any:
        if name != self.name:
            return out
        self.count += 1
        if self.count - 1 != self.index:
            return out
        self.value = out
        return out if self.eps is None else out + self.eps


def normalise(source: Source, layer: Any) -> str:
    """The canonical name of ``layer``: a name with either separator, or the submodule."""
    if isinstance(layer, str):
        return layer.replace("/" if source.separator == "." else ".", source.separator).strip(source.separator)
    if source.kind == "nnx":
        from flax import nnx

        for path, module in nnx.iter_modules(source.root):
            if module is layer and path:
                return ".".join(map(str, path))
        raise LayerError(f"the given {type(layer).__name__} is not a submodule of the model; its layers: "
                         f"{_listing(source.modules)}")
    path = getattr(layer, "path", None) if getattr(layer, "scope", None) is not None else None
    if path:
        return "/".join(path)
    raise LayerError(f"layer must be a submodule's name (its path, e.g. 'Conv_0' or 'block1/Conv_0') or a "
                     f"bound submodule, got {type(layer).__name__}")


def spatial_calls(calls: Iterable[tuple[str, Any, Any]], layout: str) -> list[str]:
    """The names whose output is ``(B, h, w, C)`` (NCHW: ``(B, C, h, w)``) with ``h·w > 1``."""
    found = []
    for name, shape, _ in calls:
        if shape is not None and len(shape) == 4:
            h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
            if h * w > 1:
                found.append(name)
    return found


def unique(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` without repeats, in order of first appearance."""
    return tuple(dict.fromkeys(names))


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(repr(n) for n in names) if names else "none"


def unknown_layer(name: str, names: Iterable[str], source: Source) -> LayerError:
    """The ``LayerError`` for a layer that is not a submodule, listing those there are."""
    names = list(names)
    if not names:
        return LayerError(f"layer {name!r}: this {source.kind} model has no Flax submodules to read (layer "
                          "methods need a linen or NNX module, or a function applying one)")
    return LayerError(f"no layer {name!r} in the model; its layers: {_listing(names)}")


def probe_inputs(source: Source, layout: str) -> list[tuple[int, ...]]:
    """Input shapes to find a model's layers on when no batch is at hand: one image of the
    channel counts the 4-D kernels read, at 224, 64, 32 and 28 px."""
    import jax

    channels: dict[int, None] = {}
    for leaf in jax.tree_util.tree_leaves(source.variables):
        shape = getattr(leaf, "shape", ())
        if len(shape) == 4:
            channels.setdefault(int(shape[2] if layout == "NHWC" else shape[1]), None)
    return [(1, s, s, c) if layout == "NHWC" else (1, c, s, s) for c in channels for s in (224, 64, 32, 28)]
