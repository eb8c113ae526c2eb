"""``ak.explain`` on a model of another framework: checks, targets, chunks, the result.

The model is wrapped by the backend that claims it (or the one named by ``backend=``) as a
:class:`~attribkit.backends.FrameworkModel`. A method with a framework kernel
(``MethodSpec.framework``) runs it chunk by chunk; a forward-only method (occlusion, RISE,
...) runs unchanged on the model seen as ``predict(batch)``. Inputs are in the model's
layout; the maps come back channel-first NumPy arrays, as every
:class:`~attribkit.result.Attribution` (``meta["input_layout"]`` says what the input was).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from attribkit.backends.layout import channels_first, check_layout, to_model_layout
from attribkit.backends.spec import BackendSpec, unclaimed_framework
from attribkit.backends.targets import Classes, parse_classes
from attribkit.errors import InputError, InvalidOptionError, MissingDependencyError
from attribkit.registry import MethodSpec
from attribkit.result import Attribution


def find_backend(model: Any, options: dict[str, Any]) -> BackendSpec | None:
    """The backend for ``model`` (``options["backend"]`` taken out when given), or ``None`` for a
    PyTorch module or a model no backend claims. A model of a known framework whose plugin is
    not installed is a :class:`MissingDependencyError` naming the extra."""
    from attribkit.host import get_host

    registry = get_host().backends
    name = options.pop("backend", None)
    if name is not None:
        return registry.get(name)
    found = registry.claiming(model)  # first: a Keras model on Keras' torch backend is an nn.Module too
    if found is None and _is_torch_module(model):
        return None
    if found is None and (hint := unclaimed_framework(model)) is not None:
        raise MissingDependencyError(f"{type(model).__module__}.{type(model).__name__} is a model of a "
                                     f"framework no installed backend serves; {hint}")
    return found


def _is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")  # not imported: the model cannot be a torch module
    return torch is not None and isinstance(model, torch.nn.Module)


def wrap(backend: BackendSpec, model: Any, options: dict[str, Any]) -> Any:
    """``model`` wrapped by ``backend``, with the backend's own options taken out of ``options``."""
    own = {key: options.pop(key) for key in list(options) if key in backend.options}
    fm = backend.wrap(model, **own)
    check_layout(fm.layout)
    return fm


def as_array(inputs: Any) -> np.ndarray:
    """``inputs`` (NumPy, JAX, Keras or torch CPU arrays) as a finite floating NumPy batch."""
    try:
        x = np.asarray(inputs.detach().cpu() if hasattr(inputs, "detach") else inputs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"inputs must be an array batch (B, ...), got {type(inputs).__name__}") from exc
    if x.ndim < 2 or len(x) == 0:
        raise InputError(f"inputs must be a non-empty batch (B, ...), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"inputs must be floating point, got {x.dtype}")
    if not np.isfinite(x).all():
        raise InputError("inputs contain NaN or Inf")
    return x


def explain_framework(backend: BackendSpec, model: Any, inputs: Any, target: Any, *, spec: MethodSpec,
                      layer: Any, batch_size: int | None, noise_tunnel: Any,
                      options: dict[str, Any]) -> Attribution:
    """:func:`attribkit.explain` on a framework model (see the module docstring)."""
    options = dict(options)
    fm = wrap(backend, model, options)
    if noise_tunnel is not None:
        raise InvalidOptionError("noise_tunnel= runs on PyTorch models; on a framework model use "
                                 "method='smoothgrad'")
    x = as_array(inputs)
    classes = parse_classes(target, len(x))
    kernel_spec = spec.for_framework()
    if kernel_spec is None:
        if "forward" in spec.needs:
            return _forward_only(fm, x, target, spec=spec, batch_size=batch_size, options=options)
        from attribkit.host import get_host

        usable = [s.name for s in get_host().registry if s.framework is not None or "forward" in s.needs]
        raise InvalidOptionError(f"method {spec.name!r} has no kernel for {fm.framework} models; these "
                                 f"run on them: {', '.join(usable)}")
    bound = kernel_spec.bind_options(options)
    needs_layer = "layer" in spec.needs
    if layer is not None and not needs_layer:
        raise InvalidOptionError(f"method {spec.name!r} takes no layer, but layer={layer!r} was given")
    name = fm.resolve_layer(layer, x[:2]) if needs_layer else None
    kernel = kernel_spec.load()
    whole = getattr(kernel, "whole_batch", False)  # it chunks itself (noise drawn for the whole batch)
    values, explained = [], []
    for a, b in [(0, len(x))] if whole else _ranges(len(x), batch_size):
        chunk = Classes(None if classes is None else classes[a:b])
        extra = {"rows": batch_size} if whole else {}
        values.append(kernel(fm, x[a:b], chunk, name, **bound, **extra).detach().numpy())
        explained.append(chunk.classes)
    return Attribution(values=np.concatenate(values) if len(values) > 1 else values[0], method=spec.name,
                       target=np.concatenate(explained), layer=name, input_size=_size(x, fm.layout),
                       meta={"options": bound, "batch_size": batch_size, "framework": fm.framework,
                             "input_layout": fm.layout})


def _forward_only(fm: Any, x: np.ndarray, target: Any, *, spec: MethodSpec, batch_size: int | None,
                  options: dict[str, Any]) -> Attribution:
    """A forward-only method on ``fm`` seen as ``predict(channel-first batch) -> scores``."""
    bound = spec.bind_options(options)
    result = spec.load()(framework_predict(fm), np.ascontiguousarray(channels_first(x, fm.layout)),
                         method=spec.name, target=target, layer=None, batch_size=batch_size, options=bound)
    result.meta.update(framework=fm.framework, input_layout=fm.layout)
    if result.target is not None and hasattr(result.target, "numpy"):
        result.target = result.target.numpy()
    return result


def model_scores(model: Any, inputs: Any) -> np.ndarray:
    """``model``'s scores on ``inputs`` (in its own layout): through the backend that claims it,
    else by calling it (a NumPy callable). A private, writable array."""
    from attribkit.host import get_host

    backend = get_host().backends.claiming(model)
    if backend is None:
        return np.array(model(inputs))
    return np.array(wrap(backend, model, {}).scores(as_array(inputs)))


def framework_predict(fm: Any):
    """``fm`` as a NumPy callable on channel-first batches (what forward-only kernels and the
    metrics hold), answering ``fm.scores`` of the batch in the model's layout."""
    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(fm.scores(np.ascontiguousarray(to_model_layout(np.asarray(batch), fm.layout))))

    predict.__name__ = f"{fm.framework} model"
    return predict


def _ranges(batch: int, batch_size: int | None) -> list[tuple[int, int]]:
    from attribkit.torch.runner import chunks

    return chunks(batch, batch_size)


def _size(x: np.ndarray, layout: str) -> tuple[int, int] | None:
    if x.ndim != 4:
        return None
    return tuple(x.shape[1:3]) if layout == "NHWC" else tuple(x.shape[2:])
