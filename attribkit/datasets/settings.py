"""What a dataset run's values depend on, written into its store and compared
when the run resumes, and how the call's options reach each method.

A run may resume only with the same settings: the model (its class and a
fingerprint of its weights), the data (its class, its size, a fingerprint of
its ids), the methods with their bound options and requested layers, the
target, the batch size, the metrics with their options, the image shape, the
maps' stored dtype and compressor, and the attribkit version. Settings are stored as JSON, so they are compared in
their JSON form (a tuple and a list are the same option).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attribkit.errors import InvalidOptionError
from attribkit.registry import MethodSpec, MetricSpec


def split_options(specs: Sequence[MethodSpec], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each method's bound options. A key naming one of the methods (or an alias) with
    a dict value gives that method's own options (``gradcam={"relu": False}``); any
    other key goes to every method that has an option of that name, and an option
    that none of them has is an :class:`InvalidOptionError`."""
    own: dict[str, dict[str, Any]] = {spec.name: {} for spec in specs}
    names = {alias: spec for spec in specs for alias in (spec.name, *spec.aliases)}
    shared = {}
    for key, value in options.items():
        if key in names and isinstance(value, Mapping):
            own[names[key].name].update(value)
        else:
            shared[key] = value
    for key, value in shared.items():
        takers = [spec for spec in specs if key in spec.options]
        if not takers:
            raise InvalidOptionError(
                f"none of the methods {', '.join(s.name for s in specs)} has an option {key!r}; give one "
                "method its own options as METHOD={...}")
        for spec in takers:
            own[spec.name].setdefault(key, value)
    return {spec.name: spec.bind_options(own[spec.name]) for spec in specs}


def split_layers(specs: Sequence[MethodSpec], layer: Any) -> dict[str, Any]:
    """The layer each method is asked for: ``layer`` for every layer method, or a
    ``{method: layer}`` mapping; pixel methods get none."""
    layer_methods = [spec for spec in specs if "layer" in spec.needs]
    if isinstance(layer, Mapping):
        names = {alias: spec.name for spec in specs for alias in (spec.name, *spec.aliases)}
        unknown = [key for key in layer if key not in names]
        if unknown:
            raise InvalidOptionError(f"layer= names {unknown[0]!r}, which is not one of the methods")
        chosen = {names[key]: value for key, value in layer.items()}
        pixel = [name for name in chosen if name not in {s.name for s in layer_methods}]
        if pixel:
            raise InvalidOptionError(f"method {pixel[0]!r} takes no layer (it attributes to the inputs)")
        return {spec.name: chosen.get(spec.name) for spec in layer_methods}
    if layer is not None and not layer_methods:
        raise InvalidOptionError(f"layer={layer!r} was given, but none of the methods "
                                 f"{', '.join(s.name for s in specs)} takes a layer")
    return {spec.name: layer for spec in layer_methods}


def describe_target(target: Any, items: int) -> Any:
    """The target as settings: ``None``, ``"label"``, an int, a fingerprint of one
    class per item, or a callable's qualified name."""
    if target is None or isinstance(target, str):
        return target
    if callable(target):
        return f"callable {getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    return {"per_item": fingerprint(np.asarray(target, dtype=np.int64).tobytes())}


def fingerprint(*parts: bytes) -> str:
    """A short SHA-256 of ``parts``."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()[:16]


def model_fingerprint(model: Any) -> dict[str, Any]:
    """The model's class and, for a ``torch.nn.Module``, a fingerprint of its state
    (parameters and buffers, byte for byte)."""
    import torch

    described: dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    if isinstance(model, torch.nn.Module):
        digest = hashlib.sha256()
        for name, tensor in model.state_dict().items():
            digest.update(name.encode())
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
        described["weights"] = digest.hexdigest()[:16]
    return described


def data_fingerprint(dataset: Any, ids: np.ndarray) -> dict[str, Any]:
    """The data's class, item count and a fingerprint of its ids."""
    return {"class": f"{type(dataset).__module__}.{type(dataset).__qualname__}", "items": len(dataset),
            "ids": fingerprint("\n".join(map(str, ids.tolist())).encode())}


def metric_settings(specs: Sequence[MetricSpec], options: Mapping[str, Mapping[str, Any]] | None
                    ) -> dict[str, dict[str, Any]]:
    """Each metric's bound options (``options``: ``{metric: {option: value}}``)."""
    options = dict(options or {})
    names = {alias: spec.name for spec in specs for alias in (spec.name, *spec.aliases)}
    unknown = [key for key in options if key not in names]
    if unknown:
        raise InvalidOptionError(f"metric_options names {unknown[0]!r}, which is not one of the metrics")
    given = {names[key]: value for key, value in options.items()}
    return {spec.name: spec.bind_options(given.get(spec.name, {})) for spec in specs}


def as_json(value: Any) -> Any:
    """``value`` as its JSON round trip (tuples become lists, unknown objects their repr)."""
    return json.loads(json.dumps(value, default=repr))
