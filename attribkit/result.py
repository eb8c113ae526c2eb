"""The one result type every attribution method returns."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class Attribution:
    """Attribution maps for a batch of inputs.

    Attributes:
        values: batch-first maps, ``torch.Tensor`` or ``np.ndarray``: ``(B, C, H, W)``
            (or the input's shape) for pixel methods, ``(B, 1, h, w)`` for layer maps.
        method: canonical name of the method that produced them.
        target: the per-image class indices that were explained (``(B,)`` integer
            tensor/array), or ``None`` when the target was a callable.
        layer: dotted name of the layer used by layer methods, else ``None``.
        input_size: ``(H, W)`` of the inputs, for :meth:`upsampled`.
        meta: method-specific extras (options used, timings, the target callable).
    """

    values: Any
    method: str
    target: Any = None
    layer: str | None = None
    input_size: tuple[int, ...] | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (detached, on the CPU)."""
        return _to_numpy(self.values)

    def upsampled(self, size: tuple[int, int] | None = None) -> Any:
        """Values resized bilinearly to ``size`` (default: the input's ``H, W``).

        Uses the half-pixel convention of ``torch.nn.functional.interpolate(...,
        mode="bilinear", align_corners=False)``; pixel maps already at that size
        are returned unchanged.
        """
        size = tuple(size or self.input_size or ())
        if len(size) != 2:
            raise ValueError("upsampled() needs a target (H, W): the inputs were not images")
        values = self.values
        if tuple(values.shape[-2:]) == size:
            return values
        if isinstance(values, np.ndarray):
            return bilinear_resize(values, size)
        import torch.nn.functional as F  # values is a tensor, so torch is present

        flat = values.reshape(-1, 1, *values.shape[-2:])
        resized = F.interpolate(flat.float() if not flat.is_floating_point() else flat,
                                size=size, mode="bilinear", align_corners=False)
        return resized.reshape(*values.shape[:-2], *size)

    def _repr_html_(self) -> str:
        """How Jupyter shows a result: the first maps as one small inline PNG (each map's
        magnitude, channels summed, on its own scale, colour map inferno) and what
        produced them (method, layer, targets, shape)."""
        import html

        values = self.numpy()
        facts = [f"<b>{html.escape(self.method)}</b>"]
        if self.layer:
            facts.append(f"layer {html.escape(str(self.layer))}")
        facts.append(f"{len(values)} map{'s' if len(values) != 1 else ''} of shape {tuple(values.shape[1:])}")
        if self.target is not None:
            targets = [int(t) for t in _to_numpy(self.target).reshape(-1)]
            shown = ", ".join(map(str, targets[:HTML_MAPS])) + (", ..." if len(targets) > HTML_MAPS else "")
            facts.append(f"target{'s' if len(targets) != 1 else ''} {shown}")
        picture = ""
        if values.ndim >= 3 and len(values):
            try:
                picture = (f'<img src="{_maps_png(values[:HTML_MAPS], self.input_size)}" '
                           f'alt="the first maps of {html.escape(self.method)}" style="image-rendering:auto">')
            except (ImportError, ValueError):  # no matplotlib/PIL, or maps that are not images
                picture = ""
        return (f'<div class="attribkit-attribution">{picture}'
                f'<div style="font-family:sans-serif;font-size:12px">Attribution: {" · ".join(facts)}</div></div>')


HTML_MAPS = 8  # maps drawn by Attribution._repr_html_
HTML_SIDE = 64  # pixels per map there


def _maps_png(values: np.ndarray, input_size: Any) -> str:
    """Maps ``(B, C, h, w)`` (or ``(B, h, w)``) side by side as a base64 PNG data URI."""
    import base64
    import io

    from matplotlib import colormaps
    from PIL import Image

    cells = []
    for v in np.asarray(values, dtype=np.float64):
        m = np.abs(v.sum(axis=0) if v.ndim == 3 else v.reshape(v.shape[-2:]))
        size = tuple(input_size) if input_size and len(input_size) == 2 else m.shape
        scale = HTML_SIDE / max(size)
        m = bilinear_resize(m, (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))))
        kept = m[m > 0]
        top = float(np.percentile(kept, 98)) if kept.size else 0.0
        norm = np.clip(m / top, 0, 1) if top > 0 and np.isfinite(top) else np.zeros_like(m)
        cells.append(np.asarray(colormaps["inferno"](norm))[..., :3])
    height = max(c.shape[0] for c in cells)
    gap = np.ones((height, 2, 3))
    strip = np.concatenate([part for c in cells for part in (np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0)),
                                                                    constant_values=1.0), gap)][:-1], axis=1)
    buffer = io.BytesIO()
    Image.fromarray((strip * 255 + 0.5).astype(np.uint8)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _to_numpy(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "detach"):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of half-pixel bilinear sampling along one axis."""
    scale = n_in / n_out
    src = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, None)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def bilinear_resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``values`` bilinearly (``align_corners=False``)."""
    y0, y1, wy = _axis_weights(values.shape[-2], size[0])
    x0, x1, wx = _axis_weights(values.shape[-1], size[1])
    rows = values[..., y0, :] * (1 - wy)[:, None] + values[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx
