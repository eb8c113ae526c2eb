"""Results that :func:`attribkit.compare` reuses instead of computing them again.

``ak.explain(model, x, method="captum.integrated_gradients")`` followed by
``ak.compare(model, x, [..., "captum.integrated_gradients"])`` used to run the
integrated gradients twice (80 s, then 108 s on 4 ResNet-50 images). A small
least-recently-used table remembers results by everything that decides them:

* the model: the object itself (its ``id`` plus a weak reference, so a new model
  at a reused address is not mistaken for it), every parameter and buffer
  (:func:`digest` of every bit, with names, shapes, dtypes and devices), and each
  submodule's type, train/eval flag and hook counts. Any change to the weights,
  also one that bypasses autograd's version counters (``p.data.mul_(2)``,
  ``load_state_dict``), gives a different key: a changed model is never served
  a stale result;
* the images (a digest of their values: changing them in place is a new key);
* the method's canonical name, its bound options (defaults filled in), the
  target, the layer, ``batch_size`` and the noise tunnel.

What is never remembered: a model that is not an ``nn.Module`` (its weights
cannot be seen), a target, option or layer that is a callable or another
object without a value (a ``Region``, a lambda), and random calls (an option
``seed`` left at ``None``): each of those runs again.

Who fills the table: :func:`attribkit.compare` with every result it computes,
and :func:`attribkit.explain` with the results of calls that took at least
:data:`RECORD_AFTER_S` seconds (a copy of the values, so changing a returned
result does not change the remembered one), where the digests cost a small
fraction of the call (for ResNet-50's 25 M parameters about the time of one
forward of one image, against the ~600 such forwards of integrated gradients on
4 images).
Only ``compare`` reads it; ``explain`` always computes.

Bounded: :data:`MAX_ENTRIES` results and :data:`MAX_BYTES` of values, least
recently used out first. ``ATTRIBKIT_REUSE=0`` switches it off; :func:`clear`
empties it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import weakref
from typing import Any

MAX_ENTRIES = 16
MAX_BYTES = 512 * 2**20
RECORD_AFTER_S = 2.0
_BLOCK = 2**20

_lock = threading.Lock()
_table: collections.OrderedDict[tuple, tuple[Any, Any, int]] = collections.OrderedDict()
_weights: dict[str, Any] = {}


class _NoValue(Exception):
    """Something in the call has no value to key on: the call is not remembered."""


def enabled() -> bool:
    """Whether results are remembered (``ATTRIBKIT_REUSE`` is not ``0``/``off``)."""
    return os.environ.get("ATTRIBKIT_REUSE", "").strip().lower() not in ("0", "off", "false", "no")


def clear() -> None:
    """Forget every remembered result."""
    with _lock:
        _table.clear()


def _block_weights(device: Any, dtype: Any) -> Any:
    import torch

    key = f"{device}/{dtype}"
    if key not in _weights:
        generator = torch.Generator().manual_seed(0x5EED)
        high = 2**30 if dtype == torch.int32 else 2**62
        odd = torch.randint(-high, high, (_BLOCK,), generator=generator, dtype=torch.int64) * 2 + 1
        _weights[key] = odd.to(device=device, dtype=dtype)
    return _weights[key]


def digest(tensor: Any) -> tuple:
    """``(dtype, shape, device, h)`` where ``h = sum_i wrap(bits(x_i) * w_i)`` for fixed
    random odd weights ``w`` (products wrapping in 32 or 64 bits, summed exactly):
    integer arithmetic, so the same values give the same ``h`` on any thread
    count, and a change of any single element always changes it (several at once
    collide with odds of about 2**-32)."""
    import numpy as np
    import torch

    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(tensor))
    t = tensor.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    flat = t.contiguous().reshape(-1)
    if flat.is_floating_point():
        flat = flat.view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()])
    if flat.dtype not in (torch.int32, torch.int64):
        flat = flat.to(torch.int32)
    weights = _block_weights(flat.device, flat.dtype)
    product = torch.empty(min(len(flat), _BLOCK), dtype=flat.dtype, device=flat.device)
    total = 0
    for k, start in enumerate(range(0, len(flat), _BLOCK)):
        n = min(_BLOCK, len(flat) - start)
        torch.mul(flat[start:start + n], weights[:n], out=product[:n])
        total = (total + int(product[:n].sum(dtype=torch.int64)) * (2 * k + 1)) % 2**64
    return (str(tensor.dtype), tuple(tensor.shape), str(t.device), total)


def _token(value: Any, model: Any) -> Any:
    """A hashable stand-in for an option, target or layer value (``_NoValue`` if none)."""
    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return (type(value).__name__, value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return ("tensor", digest(value))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_token(v, model) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _token(v, model)) for k, v in value.items())))
    if isinstance(value, torch.nn.Module):  # a layer: by its name in the model
        names = {id(m): n for n, m in model.named_modules()}
        if id(value) in names:
            return ("layer", names[id(value)])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # e.g. a NoiseTunnel
        return (type(value).__qualname__, _token(dataclasses.asdict(value), model))
    raise _NoValue


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """The model and the images of a call, digested once for several methods."""

    model_ref: Any
    key: tuple


def fingerprint(model: Any, images: Any) -> Fingerprint | None:
    """The model's and the images' part of the key (``None``: not remembered)."""
    import torch

    if not enabled() or not isinstance(model, torch.nn.Module):
        return None
    try:
        images_token = _token(images, model)
        ref = weakref.ref(model)
    except (_NoValue, TypeError):
        return None
    state = tuple((name, digest(t)) for name, t in (*model.named_parameters(remove_duplicate=False),
                                                    *model.named_buffers(remove_duplicate=False)))
    modules = tuple((name, type(m).__qualname__, m.training, len(m._forward_hooks),
                     len(m._forward_pre_hooks), len(m._backward_hooks))
                    for name, m in model.named_modules())
    return Fingerprint(ref, (id(model), state, modules, images_token))


def _key(fp: Fingerprint, method: str, call: dict[str, Any]) -> tuple | None:
    options = call.get("options") or {}
    tunnel = call.get("noise_tunnel")
    if ("seed" in options and options["seed"] is None) or (
            tunnel is not None and getattr(tunnel, "seed", None) is None):
        return None  # random: a kind's name alone is a NoiseTunnel without a seed
    model = fp.model_ref()
    try:
        return (fp.key, method, tuple(sorted((k, _token(v, model)) for k, v in call.items()
                                             if k != "options")),
                _token(dict(options), model))
    except _NoValue:
        return None


def lookup(fp: Fingerprint | None, method: str, **call: Any) -> Any:
    """The remembered result of ``method`` on ``fp``'s model and images with ``call``'s
    ``target``, ``layer``, ``batch_size``, ``noise_tunnel`` and bound ``options``, or ``None``."""
    if fp is None:
        return None
    key = _key(fp, method, call)
    with _lock:
        entry = _table.get(key) if key is not None else None
        if entry is None or entry[0]() is not fp.model_ref():
            return None
        _table.move_to_end(key)
        return entry[1]


def remember(fp: Fingerprint | None, method: str, result: Any, *, copy: bool = False,
             **call: Any) -> None:
    """Remember ``result`` under :func:`lookup`'s key (``copy``: a copy of its values)."""
    if fp is None or fp.model_ref() is None:
        return
    key = _key(fp, method, call)
    if key is None:
        return
    values = result.values
    size = values.nbytes if hasattr(values, "nbytes") else values.numel() * values.element_size()
    if size > MAX_BYTES:
        return
    if copy:
        result = dataclasses.replace(result, values=values.copy() if hasattr(values, "copy")
                                     else values.detach().clone())
    with _lock:
        _table.pop(key, None)
        _table[key] = (fp.model_ref, result, size)
        while len(_table) > MAX_ENTRIES or sum(e[2] for e in _table.values()) > MAX_BYTES:
            _table.popitem(last=False)
