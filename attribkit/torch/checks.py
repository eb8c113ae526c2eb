"""Input checks shared by every method: run before any work, each error names the problem.

- the batch: a floating-point tensor ``(B, ...)`` with ``B >= 1``, ``(B, C, H, W)``
  for image methods;
- finite: a NaN or an infinity in the input makes every map meaningless (or
  silently changes the explained class), so it is refused, naming the image;
- what the model reads: the rank and channel count its first convolution
  (in module order) expects, e.g. ``(B, 3, H, W)`` for a torchvision ResNet;
- where and in which dtype: on the device of the model's parameters, and
  converted to their floating dtype (a float64 batch for a float32 model).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from attribkit.errors import AttribkitError, GradientModeError, InputError


def check_batch(inputs: torch.Tensor, *, image: bool) -> None:
    """A floating-point, non-empty, finite ``(B, ...)`` batch; ``(B, C, H, W)`` if ``image``."""
    if not inputs.is_floating_point():
        raise InputError(f"inputs must be a floating-point tensor, got {inputs.dtype}")
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise InputError(f"inputs must be a non-empty batch (B, ...), got shape {tuple(inputs.shape)}")
    if image and inputs.ndim != 4:
        raise InputError(f"this method needs images (B, C, H, W), got shape {tuple(inputs.shape)}"
                         f"{_rank_hint(inputs.ndim, 4)}")
    check_finite(inputs)


def check_finite(inputs: torch.Tensor, what: str = "inputs") -> None:
    """``InputError`` naming the first image with a NaN or infinite value."""
    finite = torch.isfinite(inputs.detach().reshape(len(inputs), -1)).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        first = inputs[int(bad[0])]
        kinds = [k for k, hit in (("NaN", bool(first.isnan().any())),
                                  ("infinite", bool(first.isinf().any()))) if hit]
        raise InputError(
            f"{what} contain {' and '.join(kinds)} values (image {int(bad[0])}"
            f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); attributions of such inputs "
            "are meaningless: replace them (e.g. torch.nan_to_num) or drop those images"
        )


def _rank_hint(ndim: int, expected: int) -> str:
    if ndim == expected - 1:
        return "; add a batch dimension with x.unsqueeze(0)"
    return ""


def first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    """``(name, module)`` of the first convolution in module order, if any."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return name, module
    return None


def check_model_input(model: nn.Module, inputs: torch.Tensor) -> None:
    """The rank and channel count the model's first convolution reads."""
    found = first_conv(model)
    if found is None:
        return
    name, conv = found
    ndim = len(conv.kernel_size) + 2
    layout = {3: "(B, C, L)", 4: "(B, C, H, W)", 5: "(B, C, D, H, W)"}.get(ndim, f"{ndim}-D")
    if inputs.ndim != ndim:
        raise InputError(
            f"the model's first convolution ({name or type(model).__name__}: "
            f"{type(conv).__name__}) reads {layout} batches; got inputs of shape "
            f"{tuple(inputs.shape)}{_rank_hint(inputs.ndim, ndim)}"
        )
    if inputs.shape[1] != conv.in_channels:
        raise InputError(
            f"the model expects {conv.in_channels} input channels (its first convolution "
            f"{name or type(model).__name__} has in_channels={conv.in_channels}); got inputs of "
            f"shape {tuple(inputs.shape)} with {inputs.shape[1]}"
            + (" (a grey-scale batch for an RGB model? repeat it: x.expand(-1, 3, -1, -1))"
               if inputs.shape[1] == 1 and conv.in_channels == 3 else "")
        )


def prepare_inputs(model: Any, inputs: Any, *, image: bool) -> torch.Tensor:
    """Check ``inputs`` for ``model`` (see the module docstring) and return them in
    the dtype of the model's floating-point parameters."""
    if not isinstance(inputs, torch.Tensor):
        raise InputError(
            f"inputs must be a torch.Tensor batch, got {type(inputs).__name__}; convert with "
            "torch.as_tensor(...)"
        )
    check_batch(inputs, image=image)
    if not isinstance(model, nn.Module):
        return inputs
    check_model_input(model, inputs)
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is None:
        return inputs
    if param.device != inputs.device:
        raise InputError(
            f"inputs are on {inputs.device} but the model's parameters are on {param.device}; "
            "move one of them"
        )
    return inputs if inputs.dtype == param.dtype else inputs.to(param.dtype)


def check_grad_mode(inputs: torch.Tensor) -> None:
    """Gradients are impossible under ``torch.inference_mode``: say so clearly."""
    if torch.is_inference_mode_enabled() or inputs.is_inference():
        raise GradientModeError(
            "attribution needs autograd, which torch.inference_mode() disables (and tensors made "
            "under it cannot be differentiated); call explain outside inference_mode. "
            "torch.no_grad() is fine: attribkit re-enables gradients itself"
        )


@contextlib.contextmanager
def input_shape_noted(inputs: torch.Tensor) -> Iterator[None]:
    """An error raised by the model inside the body carries the inputs' shape as a note."""
    try:
        yield
    except (RuntimeError, ValueError, TypeError) as exc:
        if hasattr(exc, "add_note") and not isinstance(exc, AttribkitError):
            exc.add_note(f"attribkit: the inputs had shape {tuple(inputs.shape)} and dtype "
                         f"{inputs.dtype}")
        raise


def as_image_batch(images: Any, what: str = "images") -> torch.Tensor:
    """A ``(B, C, H, W)`` float tensor from a tensor or array (``(C, H, W)`` gets a batch axis)."""
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or not x.is_floating_point():
        raise InputError(f"{what} must be a float (B, C, H, W) batch, got a "
                         f"{tuple(x.shape)} {x.dtype} tensor")
    return x
