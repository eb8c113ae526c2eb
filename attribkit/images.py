"""Images in and out: loading, model inputs, normalisation, display arrays, class names.

Nothing here imports torch at module import time; functions that build tensors
import it when called.

Normalisation is the usual per-channel affine map (ImageNet statistics by
default)::

    normalize(x)   = (x - mean) / std
    denormalize(z) = z * std + mean          # so denormalize(normalize(x)) == x
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CHANNELS = (1, 3, 4)


# --------------------------------------------------------------------------- loading


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` float32 array in ``[0, 1]``."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def to_input(images: Any, size: int | None = 224, *, resize: int | None = None, crop: bool = True,
             mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
             device: Any = "cpu") -> Any:
    """Images -> a normalised ``(B, 3, size, size)`` float tensor on ``device``.

    ``images`` is a path, an ``(H, W, 3)`` array in ``[0, 1]`` (or ``uint8``),
    a PIL image, a ``(3, H, W)`` tensor, a list of these, or a 4-D batch
    (one output row per image).

    The standard ImageNet evaluation transform: resize the shorter side to
    ``resize`` (default ``round(size * 256 / 224)``), centre-crop ``size x size``,
    then ``(x - mean) / std`` per channel. ``crop=False`` resizes the whole image
    to ``size x size`` instead (nothing cut off, the aspect ratio not kept).
    ``size=None`` keeps the image as it is (only normalised); images of a list
    must then share one size.
    """
    import torch
    from torchvision.transforms import functional as TF

    batched = isinstance(images, (list, tuple)) or getattr(images, "ndim", 0) == 4
    items = list(images) if batched else [images]
    batch = []
    for item in items:
        x = _as_chw_tensor(item)
        if size is not None and not crop:
            x = TF.resize(x, [size, size], antialias=True)
        elif size is not None:
            x = TF.resize(x, resize or round(size * 256 / 224), antialias=True)
            x = TF.center_crop(x, [size, size])
        batch.append(normalize(x, mean, std))
    return torch.stack(batch).to(device)


def _as_chw_tensor(item: Any) -> Any:
    import torch

    if isinstance(item, (str, Path)):
        item = load_image(item)
    elif hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        item = np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(item, torch.Tensor):
        x = item.detach().cpu()
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return x if x.shape[0] in _CHANNELS else x.permute(2, 0, 1)
    arr = np.asarray(item)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(channels_first(arr[None])[0]))


# --------------------------------------------------------------------- normalisation


def _stats_shape(x: Any, mean: Sequence[float], std: Sequence[float],
                 channel_axis: int) -> tuple[np.ndarray, np.ndarray]:
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray(std, dtype=np.float32).reshape(shape)
    return m, s


def _channel_axis(x: Any) -> int:
    """``-3`` for ``(3, H, W)`` / ``(B, 3, H, W)``, ``-1`` for channels-last arrays."""
    if x.ndim >= 3 and x.shape[-3] not in _CHANNELS and x.shape[-1] in _CHANNELS:
        return x.ndim - 1
    return x.ndim - 3


def normalize(x: Any, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Any:
    """``(x - mean) / std`` per channel, for ``(3, H, W)``, ``(B, 3, H, W)`` or
    channels-last arrays; tensors stay tensors (same device and dtype)."""
    m, s = _stats_shape(x, mean, std, _channel_axis(x))
    if hasattr(x, "new_tensor"):
        return (x - x.new_tensor(m)) / x.new_tensor(s)
    return (np.asarray(x) - m) / s


def denormalize(x: Any, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> Any:
    """Invert :func:`normalize`: ``x * std + mean`` per channel (same layouts)."""
    m, s = _stats_shape(x, mean, std, _channel_axis(x))
    if hasattr(x, "new_tensor"):
        return x * x.new_tensor(s) + x.new_tensor(m)
    return np.asarray(x) * s + m


# --------------------------------------------------------------------- array layouts


def as_numpy(x: Any) -> np.ndarray:
    """A tensor (detached, moved to the CPU) or array-like as a NumPy array.

    Half-precision tensors become float32; other dtypes (``uint8`` pictures) are kept.
    """
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point() and x.element_size() < 4:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def channels_first(batch: np.ndarray) -> np.ndarray:
    """A 4-D batch as ``(B, C, H, W)``: ``(B, H, W, C)`` is transposed when its
    last axis looks like channels (1, 3 or 4) and its second axis does not."""
    if batch.ndim != 4:
        raise ValueError(f"expected a 4-D batch, got shape {batch.shape}")
    if batch.shape[1] not in _CHANNELS and batch.shape[-1] in _CHANNELS:
        return batch.transpose(0, 3, 1, 2)
    return batch


def as_batch(x: Any, *, batched: bool | None = None) -> np.ndarray:
    """Images or maps in any common layout -> a ``(B, C, H, W)`` NumPy array.

    Accepts tensors or arrays: ``(H, W)``, ``(C, H, W)`` / ``(H, W, C)`` (one
    image), ``(B, C, H, W)`` / ``(B, H, W, C)``. ``batched=True`` reads a 3-D
    input as ``(B, H, W)`` (one-channel maps of a batch) instead.
    """
    arr = as_numpy(x)
    if arr.ndim == 2:
        return arr[None, None]
    if arr.ndim == 3:
        if batched:
            return arr[:, None]
        if arr.shape[0] not in _CHANNELS and arr.shape[-1] in _CHANNELS:
            arr = arr.transpose(2, 0, 1)
        return arr[None]
    if arr.ndim == 4:
        return channels_first(arr)
    raise ValueError(f"expected an image or a batch of images, got shape {arr.shape}")


def looks_normalized(images: np.ndarray) -> bool:
    """True when float pixel values leave ``[0, 1]``, as normalised inputs do."""
    return bool(images.size) and (float(images.min()) < 0.0 or float(images.max()) > 1.0)


def to_display(images: Any, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None) -> np.ndarray:
    """Model inputs or pictures -> ``(B, H, W, 3)`` float32 RGB in ``[0, 1]`` for drawing.

    ``images`` is a tensor or array in any layout :func:`as_batch` reads.
    ``uint8`` pictures are divided by 255. With ``mean``/``std`` given, the
    images are denormalised (``x * std + mean``); with neither given, float
    images whose values leave ``[0, 1]`` are taken to be ImageNet-normalised
    and denormalised with :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`
    (pass ``mean=(0, 0, 0), std=(1, 1, 1)`` to switch that off). One-channel
    images are repeated to grey RGB, a fourth (alpha) channel is dropped, and
    the result is clipped to ``[0, 1]``.
    """
    raw = as_numpy(images)
    batch = as_batch(raw).astype(np.float32) / (255.0 if raw.dtype == np.uint8 else 1.0)
    batch = batch[:, :3]
    if mean is not None or std is not None:
        batch = denormalize(batch, mean if mean is not None else (0.0,) * batch.shape[1],
                            std if std is not None else (1.0,) * batch.shape[1])
    elif raw.dtype != np.uint8 and batch.shape[1] == 3 and looks_normalized(batch):
        batch = denormalize(batch)
    if batch.shape[1] == 1:
        batch = np.repeat(batch, 3, axis=1)
    return np.clip(batch.transpose(0, 2, 3, 1), 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------- class names


def _key(name: str) -> str:
    """Lookup key of a class name: lower case, punctuation and ``_``/``-`` as spaces."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", name.lower()).split())


def _words_score(words: list[str], name_words: list[str]) -> float:
    """Mean over ``words`` of the best match among ``name_words`` (1 for a prefix)."""
    if not words:
        return 0.0
    total = 0.0
    for x in words:
        best = 0.0
        for w in name_words:
            if w.startswith(x):
                best = 1.0
                break
            matcher = difflib.SequenceMatcher(None, x, w)
            if matcher.real_quick_ratio() > best and matcher.quick_ratio() > best:
                best = max(best, matcher.ratio())
        total += best
    return total / len(words)


class ClassIndex:
    """Class names by index, and indices by (fuzzy) name.

    ``index[24]`` is the name of class 24; ``index["great grey owl"]`` is 24.
    Names match case- and punctuation-insensitively; a name that matches no
    class exactly resolves to the single closest name (``"grat gray owl"`` ->
    24), ranked by :meth:`search`. No close match, or a tie between classes,
    raises ``KeyError`` listing the candidates. Several classes may share a
    name (ImageNet has two "crane"s): :meth:`indices` returns all of them.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(str(n) for n in names)
        self._by_key: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            self._by_key.setdefault(_key(name), []).append(i)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._by_key

    def __repr__(self) -> str:
        return f"ClassIndex({len(self)} classes: {', '.join(self.names[:3])}, ...)"

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.index(key)
        return self.names[int(key)] if not isinstance(key, slice) else self.names[key]

    def name(self, index: int) -> str:
        """The name of class ``index``."""
        return self.names[int(index)]

    def indices(self, name: str) -> list[int]:
        """Every class whose name equals ``name`` (case/punctuation-insensitive)."""
        return list(self._by_key.get(_key(name), []))

    def search(self, query: str, n: int = 5) -> list[tuple[int, str, float]]:
        """The ``n`` best matches ``(index, name, score)`` for ``query``, best first.

        ``score`` is in ``[0, 1]``, 1 for an exact match, else the best of:
        difflib's similarity ratio of the two normalised names; 0.9 times the
        mean, over the query's words, of their best match among the name's
        words (1 for a prefix: ``"owl"`` -> "great grey owl" scores 0.9,
        ``"retreiver"`` -> "golden retriever" 0.8); 0.8 when every word of
        the name is in the query (``"tabby cat"`` -> "tabby").
        """
        q = _key(query)
        words = q.split()
        scored = []
        for key, idx in self._by_key.items():
            if key == q:
                score = 1.0
            else:
                name_words = key.split()
                in_query = all(w in words for w in name_words)
                score = max(0.8 if in_query else 0.0, 0.9 * _words_score(words, name_words),
                            difflib.SequenceMatcher(None, q, key).ratio())
            scored.extend((i, self.names[i], score) for i in idx)
        scored.sort(key=lambda t: (-t[2], t[0]))
        return scored[:n]

    def index(self, name: str, cutoff: float = 0.75) -> int:
        """The index of the class called ``name``, or of the one closest name.

        Raises ``KeyError`` when no name scores at least ``cutoff`` (see
        :meth:`search`) or when the best score is shared by different classes.
        """
        exact = self.indices(name)
        if len(exact) == 1:
            return exact[0]
        if len(exact) > 1:
            listed = ", ".join(f"{i} ({self.names[i]})" for i in exact)
            raise KeyError(f"{name!r} names several classes: {listed}; pass the index")
        best = self.search(name, n=5)
        if not best or best[0][2] < cutoff:
            hint = ", ".join(repr(b[1]) for b in best[:3])
            raise KeyError(f"no class called {name!r}" + (f"; closest: {hint}" if hint else ""))
        ties = [b for b in best if b[2] == best[0][2]]
        if len(ties) > 1:
            listed = ", ".join(f"{i} ({n})" for i, n, _ in ties)
            raise KeyError(f"{name!r} is ambiguous: {listed}")
        return best[0][0]

    def label(self, index: Any) -> str:
        """``name`` of ``index`` (``"class N"`` when out of range)."""
        i = int(index)
        return self.names[i] if 0 <= i < len(self.names) else f"class {i}"


_IMAGENET: ClassIndex | None = None


def imagenet_classes() -> ClassIndex:
    """The 1000 ImageNet-1k classes, from the category names bundled with
    torchvision (no download; read from its source without importing torch
    when possible)."""
    global _IMAGENET
    if _IMAGENET is None:
        _IMAGENET = ClassIndex(_read_torchvision_categories() or _import_torchvision_categories())
    return _IMAGENET


def _read_torchvision_categories() -> list[str] | None:
    """``torchvision.models._meta._IMAGENET_CATEGORIES`` parsed from the file, or None."""
    import ast
    import importlib.util

    try:
        spec = importlib.util.find_spec("torchvision")
        if spec is None or not spec.submodule_search_locations:
            return None
        source = Path(list(spec.submodule_search_locations)[0], "models", "_meta.py").read_text()
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_IMAGENET_CATEGORIES"
                                                    for t in node.targets):
                names = ast.literal_eval(node.value)
                return names if len(names) == 1000 else None
    except (OSError, SyntaxError, ValueError):
        return None
    return None


def _import_torchvision_categories() -> list[str]:
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def class_label(index: Any, class_names: Sequence[str] | Mapping[int, str] | ClassIndex | None) -> str:
    """A readable label for class ``index``: its name from ``class_names`` when known."""
    if index is None:
        return ""
    i = int(index)
    if isinstance(class_names, Mapping):
        return str(class_names.get(i, f"class {i}"))
    if class_names is not None and 0 <= i < len(class_names):
        return str(class_names[i])
    return f"class {i}"


def __getattr__(name: str) -> Any:
    if name == "imagenet":  # built on first use: it imports torchvision
        return imagenet_classes()
    raise AttributeError(f"module 'attribkit.images' has no attribute {name!r}")
