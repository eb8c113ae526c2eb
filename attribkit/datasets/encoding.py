"""How a dataset run stores its maps: the dtype and the lossless compressor.

``dtype``: ``"float32"`` (the default, the values ``explain`` gives) or
``"float16"`` (half the bytes; 11 significant bits: a relative rounding error of
at most 2**-11 for ``|v|`` from 6.1e-5 to 65504, an absolute one of at most
3e-8 below). A value beyond float16's range would become ``inf``: it is refused
instead (:class:`Float16RangeError`), never stored. ``"bfloat16"`` (float32's
range, 8 significant bits) is refused by name while zarr cannot store it.

``compressor``: ``"none"`` (the default) or one of :data:`COMPRESSORS`, zarr v3
codecs any zarr reader decodes. The Blosc ones shuffle the bytes of each value
first (a float's exponent bytes then sit together, which is what compresses in
maps). Both are settings of the run: resuming with others is refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attribkit.errors import AttribkitError, InvalidOptionError

DTYPES = ("float32", "float16")
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
COMPRESSORS = ("none", "zstd", "gzip", "blosc-lz4", "blosc-lz4hc", "blosc-zstd", "blosc-zlib")


class StoreDtypeError(InvalidOptionError):
    """``dtype=`` names a dtype the store cannot hold."""


class CompressorError(InvalidOptionError):
    """``compressor=`` names no compressor the store knows."""


class Float16RangeError(AttribkitError, OverflowError):
    """Maps hold finite values beyond float16's range (they would be stored as ``inf``)."""


def check_dtype(dtype: Any) -> str:
    """The stored dtype's name for ``dtype`` (a name or a NumPy/torch dtype), or
    :class:`StoreDtypeError` naming the choices."""
    if dtype is None:
        return "float32"
    name = str(dtype).removeprefix("torch.")
    if not isinstance(dtype, str) and type(dtype).__module__ != "torch":
        try:  # a NumPy dtype or scalar type
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name in ("bfloat16", "bf16"):
        raise StoreDtypeError(
            f"dtype={dtype!r}: zarr (the store's format) cannot store bfloat16 arrays; store 'float16' "
            f"(half the bytes, values up to {FLOAT16_MAX:.0f}) or 'float32'")
    if name in ("half", "f2", "<f2"):
        name = "float16"
    elif name in ("float", "f4", "<f4"):
        name = "float32"
    if name not in DTYPES:
        raise StoreDtypeError(f"dtype={dtype!r}: the maps are stored as one of {', '.join(DTYPES)}")
    return name


def check_compressor(compressor: Any) -> str:
    """The compressor's name (``None`` is ``"none"``), or :class:`CompressorError`
    naming the choices."""
    name = "none" if compressor is None else str(compressor).lower()
    if name not in COMPRESSORS:
        raise CompressorError(f"compressor={compressor!r}: choose one of {', '.join(COMPRESSORS)}")
    return name


def codecs(compressor: str) -> list[Any] | None:
    """The zarr v3 bytes-to-bytes codecs of ``compressor`` (``None``: none)."""
    from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

    if compressor == "none":
        return None
    if compressor == "zstd":
        return [ZstdCodec(level=3)]
    if compressor == "gzip":
        return [GzipCodec(level=5)]
    cname = compressor.removeprefix("blosc-")
    return [BloscCodec(cname=cname, clevel=5, shuffle="shuffle")]


def stored_maps(values: Any, dtype: str, method: str, rows: tuple[int, int]) -> np.ndarray:
    """``values`` (a tensor, on any device, or an array) as the NumPy array stored
    in ``dtype``; :class:`Float16RangeError` if float16 would turn a finite value
    of ``method``'s maps of items ``rows`` (first, last) into ``inf``."""
    import torch

    tensor = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    stored = tensor.to(torch.float16 if dtype == "float16" else torch.float32)
    if dtype == "float16":
        check_float16(tensor, stored, method, rows)
    return stored.cpu().numpy()


def check_float16(values: Any, halves: Any, method: str, rows: tuple[int, int]) -> None:
    """:class:`Float16RangeError` where ``halves`` (``values`` as float16) holds an
    ``inf`` that ``values`` did not."""
    import torch

    overflow = torch.isinf(halves) & torch.isfinite(values)
    if bool(overflow.any()):
        largest = float(values[overflow].abs().max())
        raise Float16RangeError(
            f"{method}'s maps of items {rows[0]}-{rows[1]} reach |value| = {largest:.4g}, beyond float16's "
            f"range ({FLOAT16_MAX:.0f}): stored as float16 they would be inf. Store them as float32 "
            "(dtype='float32', in another path: a store keeps its dtype), or scale the model's output")
