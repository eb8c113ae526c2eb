"""Layouts of a layer's output: channels-first, channel-last, tokens.

CAM methods weight the channels of a layer's activations at each position. A
convolutional layer returns ``(B, C, h, w)`` ("BCHW"); a Swin stage or the
inside of a ConvNeXt block returns ``(B, h, w, C)`` ("BHWC"); a vision
transformer block returns tokens ``(B, N, C)`` ("BNC"), where the first
``prefix_tokens`` tokens (class, distillation, register tokens) are no image
positions and the remaining ``N - prefix_tokens`` are the patches of a
``grid = (gh, gw)``.

The layout is **read from the model**, never guessed from the shape (a
``(B, 7, 7, 768)`` tensor is as plausible channels-first as channel-last):

* timm's ``VisionTransformer`` family (ViT, DeiT including the distilled one,
  register tokens, EVA...): ``model.num_prefix_tokens`` and the patch
  embedding's grid (``patch_embed.dynamic_feat_size(input size)`` when the
  model takes dynamic image sizes, else ``patch_embed.grid_size``);
* torchvision's ``VisionTransformer``: one class token, grid
  ``input size // patch_size``;
* torchvision's ``SwinTransformer`` (v1 and v2) and timm models with
  ``output_fmt == "NHWC"`` (timm's Swin v1 and v2): channel-last;
* ConvNeXt (torchvision and timm): channels-first, except inside a block's
  channel-last part (after torchvision's ``Permute([0, 2, 3, 1])``; timm's
  ``norm`` and ``mlp`` of a block without ``conv_mlp``);
* the layer's own type: ``Conv2d``, ``BatchNorm2d`` and 2-D pooling give BCHW;
  a ``Linear`` or a plain ``LayerNorm`` working on the last dimension of a 4-D
  tensor gives BHWC; torchvision's ``Permute`` tells by its dims.

A 4-D output of a model that applies ``Linear``/``LayerNorm`` modules on the last
dimension of 4-D tensors (seen in the same forward) or contains ``Permute``
modules, and is none of the above, is an error that names ``layout=`` (functional
``F.linear``/``F.layer_norm`` calls are not seen); so is a token output of a model that
is not recognised. ``layout="BCHW" | "BHWC" | "BNC"`` (with ``prefix_tokens=``
and ``grid=`` for tokens) always overrides what is read from the model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from attribkit.errors import InvalidOptionError, LayerError

LAYOUTS = ("BCHW", "BHWC", "BNC")

_CHANNELS_FIRST_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d,
                         nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                         nn.Dropout2d, nn.Upsample, nn.PixelShuffle)


@dataclasses.dataclass(frozen=True)
class Layout:
    """How to read a layer output as ``(B, C, h, w)``.

    Attributes:
        kind: ``"BCHW"``, ``"BHWC"`` or ``"BNC"``.
        prefix_tokens: leading non-patch tokens (``"BNC"`` only).
        grid: the patch grid ``(gh, gw)`` (``"BNC"`` only).
        source: where it was read from (for messages and ``result.meta``).
    """

    kind: str
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None
    source: str = ""

    def to_bchw(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in this layout as ``(B, C, h, w)``: channel-last is permuted; tokens
        lose their prefix and are reshaped to the grid (``(B, N, C)`` ->
        ``(B, C, gh, gw)``). Differentiable, a view where possible."""
        if self.kind == "BCHW":
            return x
        if self.kind == "BHWC":
            return x.permute(0, 3, 1, 2)
        gh, gw = self.grid  # type: ignore[misc]
        patches = x[:, self.prefix_tokens:]
        return patches.reshape(x.shape[0], gh, gw, x.shape[-1]).permute(0, 3, 1, 2)


@dataclasses.dataclass(frozen=True)
class LayoutRequest:
    """The user's ``layout=``, ``prefix_tokens=`` and ``grid=`` options (all optional)."""

    layout: str | None = None
    prefix_tokens: int | None = None
    grid: tuple[int, int] | None = None

    @classmethod
    def parse(cls, layout: Any = None, prefix_tokens: Any = None, grid: Any = None) -> "LayoutRequest":
        """Check the options; ``InvalidOptionError`` names the bad one."""
        if layout is not None:
            if not isinstance(layout, str) or layout.upper() not in LAYOUTS:
                raise InvalidOptionError(f"layout must be one of {', '.join(map(repr, LAYOUTS))} "
                                         f"or None (read from the model), got {layout!r}")
            layout = layout.upper()
        if prefix_tokens is not None and (isinstance(prefix_tokens, bool) or not isinstance(
                prefix_tokens, int) or prefix_tokens < 0):
            raise InvalidOptionError(f"prefix_tokens must be a non-negative integer, got {prefix_tokens!r}")
        if grid is not None:
            if isinstance(grid, int) and not isinstance(grid, bool):
                grid = (grid, grid)
            if (not isinstance(grid, (tuple, list)) or len(grid) != 2
                    or not all(isinstance(g, int) and not isinstance(g, bool) and g > 0 for g in grid)):
                raise InvalidOptionError(f"grid must be (height, width) in patches, got {grid!r}")
            grid = (int(grid[0]), int(grid[1]))
        if layout in ("BCHW", "BHWC") and (prefix_tokens is not None or grid is not None):
            raise InvalidOptionError(f"prefix_tokens= and grid= describe tokens (layout='BNC'), "
                                     f"not layout={layout!r}")
        return cls(layout, prefix_tokens, grid)

    @property
    def tokens(self) -> bool:
        """The user described tokens (``layout="BNC"`` or ``prefix_tokens``/``grid``)."""
        return self.layout == "BNC" or (self.layout is None and (
            self.prefix_tokens is not None or self.grid is not None))


# ----------------------------------------------------------------- model families


def _torchvision_class(module: str, name: str) -> type | None:
    try:
        mod = __import__(f"torchvision.models.{module}", fromlist=[name])
    except ImportError:
        return None
    return getattr(mod, name, None)


def _is_timm(model: nn.Module, family: str | None = None) -> bool:
    module = type(model).__module__
    return module.startswith("timm.") and (family is None or family in module)


def token_layout(model: nn.Module, image_size: tuple[int, int] | None) -> Layout | None:
    """The token layout of a vision transformer, read from the model: prefix tokens
    and the patch grid for inputs of ``image_size`` (``None`` if ``model`` is not a
    recognised ViT)."""
    vit = _torchvision_class("vision_transformer", "VisionTransformer")
    if vit is not None and isinstance(model, vit):
        size = image_size or (model.image_size, model.image_size)
        grid = (size[0] // model.patch_size, size[1] // model.patch_size)
        return Layout("BNC", 1, grid, "torchvision VisionTransformer: class token, image size "
                                      f"{size[0]}x{size[1]} // patch size {model.patch_size}")
    prefix = getattr(model, "num_prefix_tokens", None)
    embed = getattr(model, "patch_embed", None)
    if isinstance(prefix, int) and embed is not None and hasattr(embed, "patch_size"):
        if getattr(model, "dynamic_img_size", False) and image_size is not None \
                and hasattr(embed, "dynamic_feat_size"):
            grid = tuple(int(g) for g in embed.dynamic_feat_size(tuple(image_size)))
            how = f"dynamic image size {image_size[0]}x{image_size[1]}"
        else:
            grid = tuple(int(g) for g in getattr(embed, "grid_size", ()) or ())
            how = "patch_embed.grid_size"
        if len(grid) == 2:
            return Layout("BNC", prefix, grid, f"{type(model).__name__}: num_prefix_tokens={prefix}, "
                                               f"patch grid {grid[0]}x{grid[1]} ({how})")
    return None


def channel_last_model(model: nn.Module) -> str | None:
    """Why ``model``'s stages are channel-last (``None`` if they are not known to be)."""
    swin = _torchvision_class("swin_transformer", "SwinTransformer")
    if swin is not None and isinstance(model, swin):
        return "torchvision SwinTransformer (channel-last stages)"
    if _is_timm(model) and getattr(model, "output_fmt", None) == "NHWC":
        return f"timm {type(model).__name__} (output_fmt='NHWC')"
    return None


def _path(model: nn.Module, layer: nn.Module) -> list[tuple[nn.Module, str]] | None:
    """``[(parent, child_name), ...]`` from the root down to ``layer``."""
    for name, module in model.named_modules():
        if module is layer:
            chain, parent = [], model
            for part in name.split(".") if name else []:
                chain.append((parent, part))
                parent = getattr(parent, part)
            return chain
    return None


def _permute_dims(module: nn.Module) -> list[int] | None:
    """The dims of a torchvision ``Permute`` module (``None`` for anything else)."""
    if type(module).__name__ != "Permute" or not hasattr(module, "dims"):
        return None
    return [int(d) for d in module.dims]


def _after_permutes(model: nn.Module, layer: nn.Module) -> str | None:
    """BHWC / BCHW from the ``Permute`` modules run before ``layer`` inside the
    ``nn.Sequential`` blocks that contain it (torchvision's ConvNeXt and Swin);
    ``None`` if no ``Permute`` precedes it there."""
    chain = _path(model, layer) or []
    state = None
    for parent, child in chain:
        if not isinstance(parent, nn.Sequential):
            continue
        for name, sibling in parent.named_children():
            if name == child:
                break
            dims = _permute_dims(sibling)
            if dims == [0, 2, 3, 1]:
                state = "BHWC"
            elif dims == [0, 3, 1, 2]:
                state = "BCHW"
    return state


def convnext_model(model: nn.Module) -> str | None:
    """Why ``model`` is a ConvNeXt (channels-first between blocks), or ``None``."""
    convnext = _torchvision_class("convnext", "ConvNeXt")
    if convnext is not None and isinstance(model, convnext):
        return "torchvision ConvNeXt"
    if _is_timm(model, "convnext") and type(model).__name__ == "ConvNeXt":
        return "timm ConvNeXt"
    return None


def _timm_convnext_channel_last(model: nn.Module, layer: nn.Module) -> bool:
    """Inside a timm ``ConvNeXtBlock`` without ``conv_mlp``, ``norm`` and ``mlp``
    (and what is in it) are channel-last; everything else is channels-first."""
    for parent, child in _path(model, layer) or []:
        if type(parent).__name__ == "ConvNeXtBlock" and _is_timm(parent):
            return not getattr(parent, "use_conv_mlp", True) and child in ("norm", "mlp")
    return False


def _layer_norm_on_last_dim(norm: nn.LayerNorm, x: torch.Tensor) -> bool | None:
    """Whether a ``LayerNorm`` normalises the last dimension of the 4-D ``x`` (``False``:
    dimension 1, as ``LayerNorm2d`` does); by the shapes, or where both dimensions have
    the width, by whether the class keeps ``nn.LayerNorm.forward``."""
    width = norm.normalized_shape[-1]
    if x.shape[-1] == width and x.shape[1] != width:
        return True
    if x.shape[1] == width and x.shape[-1] != width:
        return False
    if x.shape[1] == width:
        return type(norm).forward is nn.LayerNorm.forward
    return None


def _module_type_layout(layer: nn.Module, output: torch.Tensor) -> str | None:
    """What the layer's own type says about its 4-D output."""
    if isinstance(layer, _CHANNELS_FIRST_TYPES):
        return "BCHW"
    dims = _permute_dims(layer)
    if dims == [0, 2, 3, 1]:
        return "BHWC"
    if dims == [0, 3, 1, 2]:
        return "BCHW"
    if isinstance(layer, nn.Linear) and output.shape[-1] == layer.out_features:
        return "BHWC"
    if isinstance(layer, nn.LayerNorm) and layer.normalized_shape:
        last = _layer_norm_on_last_dim(layer, output)
        if last is not None:
            return "BHWC" if last else "BCHW"  # LayerNorm2d (timm, torchvision ConvNeXt): dim 1
    return None


def has_channel_last_parts(model: nn.Module) -> bool:
    """Static part of the check: torchvision ``Permute`` modules anywhere in the model
    (the forward's ``Linear``/``LayerNorm`` calls are seen by :class:`ChannelLastProbe`)."""
    return any(_permute_dims(m) is not None for m in model.modules())


class ChannelLastProbe:
    """Forward hooks (thread-keyed) that note whether any ``nn.Linear`` or
    ``nn.LayerNorm`` ran on the last dimension of a 4-D tensor during the forward."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.seen: str | None = None

    def _hook(self, name: str):
        def hook(module: nn.Module, args: Any, _output: Any) -> None:
            if self.seen is not None or not args or not isinstance(args[0], torch.Tensor) \
                    or args[0].ndim != 4:
                return
            if isinstance(module, nn.Linear) or _layer_norm_on_last_dim(module, args[0]):
                self.seen = name
        return hook

    def hooks(self) -> list[tuple[nn.Module, Any]]:
        """``(module, hook)`` pairs for :func:`attribkit.torch.capture.forward_hooks`."""
        return [(m, self._hook(n)) for n, m in self.model.named_modules()
                if isinstance(m, nn.Linear) or (isinstance(m, nn.LayerNorm) and m.normalized_shape)]


def _options_hint(tokens: bool) -> str:
    if tokens:
        return ("pass layout='BNC' with prefix_tokens= (class/distillation/register tokens before "
                "the patches) and grid=(patch rows, patch columns)")
    return "pass layout='BCHW' (channels first) or layout='BHWC' (channel last)"


def _token_request(request: LayoutRequest, model_layout: Layout | None, output: torch.Tensor,
                   name: str, image_size: tuple[int, int] | None) -> Layout:
    tokens = output.shape[1]
    prefix = request.prefix_tokens
    grid = request.grid
    source = "layout='BNC'"
    if prefix is None and model_layout is not None:
        prefix, source = model_layout.prefix_tokens, model_layout.source
    if grid is None and model_layout is not None and (prefix or 0) == model_layout.prefix_tokens:
        grid = model_layout.grid
    if prefix is None:
        raise LayerError(f"layer {name} returns tokens {tuple(output.shape)} and the model does not "
                         "say how many prefix tokens (class, distillation, register) come first; "
                         "pass prefix_tokens=")
    if grid is None:
        patches = tokens - prefix
        side = math.isqrt(max(patches, 0))
        square_input = image_size is None or image_size[0] == image_size[1]
        if side * side != patches or not square_input:
            raise LayerError(f"layer {name} returns {patches} patch tokens; pass grid=(rows, columns)")
        grid = (side, side)
    if prefix + grid[0] * grid[1] != tokens:
        raise LayerError(
            f"layer {name} returns {tokens} tokens, not {prefix} prefix tokens + a "
            f"{grid[0]}x{grid[1]} patch grid ({source}); it is not a layer of the model's image "
            f"tokens (pick a transformer block or its norm), or {_options_hint(True)}"
        )
    return Layout("BNC", prefix, grid, source)


def resolve_layout(model: nn.Module, layer: nn.Module, name: str, output: Any,
                   image_size: tuple[int, int] | None, request: LayoutRequest | None = None,
                   seen_channel_last: str | None = None) -> Layout:
    """The layout of ``layer``'s ``output`` (see the module docstring for the rules).

    Args:
        model: the model the layer belongs to.
        layer: the explained module; ``name`` its dotted name (for messages).
        output: what the layer returned.
        image_size: the input's ``(H, W)`` (the patch grid of dynamic-size ViTs).
        request: the user's ``layout=``/``prefix_tokens=``/``grid=`` (they override).
        seen_channel_last: the name of a module seen applying ``Linear``/``LayerNorm``
            to the last dimension of a 4-D tensor in the same forward, if any.

    Raises:
        LayerError: the output is no image-shaped tensor, or the layout cannot be
            read from the model (the message names ``layout=``).
    """
    request = request or LayoutRequest()
    if not isinstance(output, torch.Tensor):
        raise LayerError(f"CAM methods need a layer whose output is one tensor; layer {name} returned "
                         f"{type(output).__name__}")
    tokens_model = token_layout(model, image_size)
    if request.tokens:
        if output.ndim != 3:
            raise LayerError(f"layout='BNC' needs a (B, N, C) output; layer {name} returned "
                             f"{tuple(output.shape)}")
        return _token_request(request, tokens_model, output, name, image_size)
    if request.layout is not None:
        if output.ndim != 4:
            raise LayerError(f"layout={request.layout!r} needs a 4-D output; layer {name} returned "
                             f"{tuple(output.shape)}")
        return Layout(request.layout, source=f"layout={request.layout!r}")
    if output.ndim == 3:
        if tokens_model is None:
            raise LayerError(
                f"layer {name} returns tokens {tuple(output.shape)} (batch, tokens, channels) and "
                f"attribkit cannot read their layout from {type(model).__name__} (it knows timm's "
                f"and torchvision's VisionTransformer); {_options_hint(True)}"
            )
        return _token_request(LayoutRequest(), tokens_model, output, name, image_size)
    if output.ndim != 4:
        raise LayerError(
            f"CAM methods need a layer whose output is (B, C, h, w), (B, h, w, C) or tokens "
            f"(B, N, C); layer {name} returned {tuple(output.shape)}. Pick a convolutional layer, "
            "a stage or a transformer block"
        )
    by_type = _module_type_layout(layer, output)
    if by_type is not None:
        return Layout(by_type, source=f"{type(layer).__name__} layer")
    if tokens_model is not None:
        raise LayerError(
            f"layer {name} of the vision transformer {type(model).__name__} returns "
            f"{tuple(output.shape)}, which is not an image-shaped map (inside attention it is "
            "(batch, heads, tokens, head dim)); pick a block or a block's norm (the default is "
            "the last block's norm1), or pass layout="
        )
    why = channel_last_model(model)
    if why is not None:
        return Layout("BHWC", source=why)
    permuted = _after_permutes(model, layer)
    if permuted is not None:
        return Layout(permuted, source="the Permute modules before the layer")
    convnext = convnext_model(model)
    if convnext is not None:
        last = _is_timm(model) and _timm_convnext_channel_last(model, layer)
        return Layout("BHWC" if last else "BCHW", source=f"{convnext} "
                      + ("block (channel-last norm/mlp)" if last else "(channels-first stages)"))
    if seen_channel_last is not None or has_channel_last_parts(model):
        culprit = (f"{seen_channel_last} applies nn.Linear/nn.LayerNorm to the last dimension of a "
                   "4-D tensor" if seen_channel_last else "it has Permute modules")
        raise LayerError(
            f"layer {name} returns {tuple(output.shape)} and {type(model).__name__} has channel-last "
            f"parts ({culprit}), so it may be (B, h, w, C) as well as (B, C, h, w); "
            f"{_options_hint(False)}"
        )
    return Layout("BCHW", source="a model without channel-last parts")
