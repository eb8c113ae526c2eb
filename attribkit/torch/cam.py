"""CAM-family kernels: one shared engine, one small weighting per method.

Every CAM is a weighted sum of a layer's activation maps ``A_k`` (shape
``(B, C, h, w)``), usually followed by a ReLU::

    L = ReLU(sum_k  alpha_k * A_k)

The methods differ only in the weights ``alpha`` (per channel, ``(B, C, 1, 1)``,
or per position, ``(B, C, h, w)``). The engine supplies what the weightings
need:

* :func:`layer_activations` -- one forward pass without autograd that records
  the layer's output (for CAM, Score-CAM, Ablation-CAM, Eigen-CAM);
* :func:`layer_gradients` -- activations and ``d score / d A`` (for the
  Grad-CAM family).

A new gradient CAM variant is one function ``weights(acts, grads) -> alpha``
passed to :func:`gradient_cam`; see :data:`GRADIENT_WEIGHTINGS`.

Cost and autograd
-----------------
Gradients are taken only down to the target layer, never to the input. The
model runs under ``torch.no_grad()``; a forward hook on the layer replaces its
output by a fresh leaf ``A = output.detach().requires_grad_()`` (cutting the
graph below the layer) and switches autograd back on with
``torch.set_grad_enabled(True)``, so only the operations *after* the layer are
recorded; leaving the ``no_grad`` block restores the caller's mode. One
forward (the part before the layer without a graph) plus the backward of the
part after the layer: for ``layer4`` of a ResNet that is about one plain
forward. Gradients come from ``torch.autograd.grad(score.sum(), A)``, so the
model's parameters may all be frozen and no ``.grad`` is ever written. The hook
hands a clone of the leaf downstream, so in-place operations after the layer
(``out += identity``, ``ReLU(inplace=True)``) work and cannot alter ``A``.

A layer module that is called more than once in a forward (a shared ``ReLU``)
is explained at its **last** call, the same "forward-completion order" rule
the automatic layer choice uses. Hooks are removed in ``finally``.

Score-CAM runs its ``B * C`` masked forwards in batches of
``forward_batch_size`` rows (rows of all images together), on the inputs'
device, without NumPy; by default (``None``) as many rows as the memory budget
of :mod:`attribkit.torch.chunking` holds, measured by one forward of one image.

Ablation-CAM, which runs only the part of the model after the layer on its
ablated copies, lives in :mod:`attribkit.torch.ablation`.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attribkit.errors import InvalidOptionError, LayerError
from attribkit.progress import progress
from attribkit.torch.capture import LayerCapture, describe_output, forward_hooks
from attribkit.torch.chunking import measure, rows_per_chunk
from attribkit.torch.layout import ChannelLastProbe, Layout, LayoutRequest, resolve_layout
from attribkit.torch.runner import torch_kernel
from attribkit.torch.targets import ChunkTarget

Weighting = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

GRADCAMPP_EPS = 1e-6   # Grad-CAM++ denominator (as pytorch-grad-cam)
XGRADCAM_EPS = 1e-7    # XGrad-CAM denominator (as pytorch-grad-cam)
SCORECAM_EPS = 1e-8    # Score-CAM mask normalisation (as pytorch-grad-cam)


# --------------------------------------------------------------------------- engine


def _describe(layer: nn.Module) -> str:
    return type(layer).__name__


_SHAPE_HINT = ("(channel-last (B, h, w, C) and token (B, N, C) outputs work too, read from the "
               "model or given by layout=)")


def spatial_output(layer: nn.Module) -> Callable[[Any], None]:
    """A :class:`~attribkit.torch.capture.LayerCapture` check: the layer's output
    must be a ``(B, C, h, w)`` tensor (methods that read the raw output also call
    :func:`require_channels_first` after the forward)."""
    def check(output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 4:
            raise LayerError(
                f"CAM methods need a layer whose output is a (B, C, h, w) tensor; layer "
                f"{_describe(layer)} returned {describe_output(output)}. Pick a convolutional "
                "layer or block"
            )
    return check


def require_channels_first(model: nn.Module, layer: nn.Module, output: torch.Tensor,
                           inputs: torch.Tensor, probe: ChannelLastProbe) -> None:
    """``LayerError`` unless the layer's 4-D output is channels-first
    (:func:`attribkit.torch.layout.resolve_layout`), for the methods that read the raw
    output (CAM, Ablation-CAM): a channel-last output is never read as channels-first."""
    others = "Grad-CAM, HiResCAM, LayerCAM, XGrad-CAM, Grad-CAM++, Score-CAM and Eigen-CAM"
    try:
        found = resolve_layout(model, layer, _describe(layer), output, tuple(inputs.shape[-2:]),
                               None, probe.seen)
    except LayerError as exc:
        raise LayerError(f"{exc} (this method takes channels-first layers only and no layout=; "
                         f"{others} take layout=)") from None
    if found.kind != "BCHW":
        raise LayerError(
            f"this method reads channels-first (B, C, h, w) layers only; layer "
            f"{_describe(layer)} returns {tuple(output.shape)} laid out {found.kind} "
            f"({found.source}). {others} take it"
        )


def image_like_output(layer: nn.Module) -> Callable[[Any], None]:
    """A :class:`~attribkit.torch.capture.LayerCapture` check: a 3-D or 4-D tensor (its
    layout is resolved after the forward, :func:`layer_layout`)."""
    def check(output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim not in (3, 4):
            raise LayerError(
                f"CAM methods need a layer whose output is a (B, C, h, w) tensor; layer "
                f"{_describe(layer)} returned {describe_output(output)} {_SHAPE_HINT}. Pick a "
                "convolutional layer, a stage or a transformer block"
            )
    return check


def layer_layout(model: nn.Module, layer: nn.Module, output: torch.Tensor, inputs: torch.Tensor,
                 request: LayoutRequest, probe: ChannelLastProbe) -> Layout:
    """The layout of ``layer``'s recorded ``output`` (:func:`attribkit.torch.layout.resolve_layout`)."""
    return resolve_layout(model, layer, _describe(layer), output, tuple(inputs.shape[-2:]),
                          request, probe.seen)


def layer_activations(model: nn.Module, inputs: torch.Tensor, layer: nn.Module,
                      request: LayoutRequest | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One forward without autograd: ``(scores, acts, calls)``, ``acts`` being the
    layer's output at its last call (a private copy) as ``(B, C, h, w)`` and ``calls``
    how often the layer ran.

    ``request=None``: the raw output must be channels-first (:func:`require_channels_first`);
    otherwise its layout is read from the model or the request (channel-last and token
    outputs are converted, :meth:`attribkit.torch.layout.Layout.to_bchw`).
    """
    probe = ChannelLastProbe(model)
    if request is None:
        with LayerCapture(layer, _describe(layer), check=spatial_output(layer)) as capture, \
                forward_hooks(probe.hooks()), torch.no_grad():
            scores = capture.run(model, inputs)
        require_channels_first(model, layer, capture.output, inputs, probe)
        return scores, capture.output, capture.calls
    with LayerCapture(layer, _describe(layer), check=image_like_output(layer)) as capture, \
            forward_hooks(probe.hooks()), torch.no_grad():
        scores = capture.run(model, inputs)
    found = layer_layout(model, layer, capture.output, inputs, request, probe)
    return scores, found.to_bchw(capture.output), capture.calls


def layer_gradients(model: nn.Module, inputs: torch.Tensor, target: ChunkTarget,
                    layer: nn.Module, request: LayoutRequest | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, dS/dA)`` at ``layer`` for the target score ``S`` of each image, both as
    ``(B, C, h, w)`` (channel-last and token outputs converted, see
    :func:`layer_activations`; ``request=None`` reads the layout from the model).

    Only the part of the model after the layer is differentiated (see the module
    docstring); nothing is written to ``.grad``.
    """
    request = request or LayoutRequest()
    probe = ChannelLastProbe(model)
    with LayerCapture(layer, _describe(layer), mode="leaf", check=image_like_output(layer)) as capture, \
            forward_hooks(probe.hooks()):
        with torch.no_grad():
            scores = capture.run(model, inputs)
    acts = capture.output
    found = layer_layout(model, layer, acts, inputs, request, probe)
    score = target.select(scores)
    grads = None
    if score.requires_grad:
        (grads,) = torch.autograd.grad(score.sum(), acts, allow_unused=True)
    if grads is None:
        raise LayerError(
            f"the target score does not depend on the output of layer {_describe(layer)}; "
            "pick a layer on the path to the output"
            + (" (in a vision transformer, the last block's patch tokens do not reach the "
               "class token: use the last block's norm1, the default)" if found.kind == "BNC" else "")
        )
    return found.to_bchw(acts.detach()), found.to_bchw(grads)


def weighted_map(acts: torch.Tensor, weights: torch.Tensor, *, relu: bool) -> torch.Tensor:
    """``sum_k weights_k * A_k`` over channels, ``(B, 1, h, w)``; optional ReLU."""
    cam = (weights * acts).sum(dim=1, keepdim=True)
    return cam.clamp(min=0) if relu else cam


def _check_batch_size(value: Any) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise InvalidOptionError(f"forward_batch_size must be a positive integer, got {value!r}")
    return int(value)


# ------------------------------------------------------------------ gradient CAMs


def gradcam_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM: ``alpha_k = mean_ij dS/dA_kij`` (global-average-pooled gradients)."""
    return grads.mean(dim=(2, 3), keepdim=True)


def gradcampp_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (eq. 19 with first-order gradients, as the authors' code):
    ``a_kij = g^2 / (2 g^2 + sum_ab A_kab * g^3)`` (0 where ``g == 0``),
    ``alpha_k = sum_ij a_kij * ReLU(g_kij)``."""
    g2 = grads * grads
    g3 = g2 * grads
    total = acts.sum(dim=(2, 3), keepdim=True)
    a = g2 / (2 * g2 + total * g3 + GRADCAMPP_EPS)
    a = torch.where(grads != 0, a, torch.zeros_like(a))
    return (a * grads.clamp(min=0)).sum(dim=(2, 3), keepdim=True)


def hirescam_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM: the gradient itself, element-wise: ``L = ReLU(sum_k g_k * A_k)``."""
    return grads


def xgradcam_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM: ``alpha_k = sum_ij A_kij g_kij / sum_ij A_kij``."""
    total = acts.sum(dim=(2, 3), keepdim=True)
    return (grads * acts).sum(dim=(2, 3), keepdim=True) / (total + XGRADCAM_EPS)


def layercam_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM: positive gradients, element-wise: ``L = ReLU(sum_k ReLU(g_k) * A_k)``."""
    return grads.clamp(min=0)


GRADIENT_WEIGHTINGS: dict[str, Weighting] = {
    "gradcam": gradcam_weights,
    "gradcam_pp": gradcampp_weights,
    "hirescam": hirescam_weights,
    "xgradcam": xgradcam_weights,
    "layercam": layercam_weights,
}


def gradient_cam(weighting: Weighting, name: str, doc: str) -> Callable:
    """Make a gradient-CAM method from a weighting ``(acts, grads) -> alpha``."""

    def kernel(model, inputs, target, layer, *, relu: bool, layout: str | None = None,
               prefix_tokens: int | None = None, grid: tuple[int, int] | None = None) -> torch.Tensor:
        request = LayoutRequest.parse(layout, prefix_tokens, grid)
        acts, grads = layer_gradients(model, inputs, target, layer, request)
        return weighted_map(acts, weighting(acts, grads), relu=relu)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = doc
    return torch_kernel(kernel, thread_safe=True)


gradcam = gradient_cam(gradcam_weights, "gradcam", """Grad-CAM (Selvaraju et al. 2017,
arXiv:1610.02391): ``ReLU(sum_k mean_ij(dS/dA_k) A_k)``.""")
gradcam_pp = gradient_cam(gradcampp_weights, "gradcam_pp", """Grad-CAM++ (Chattopadhay et
al. 2018, arXiv:1710.11063), with the closed-form weights of the authors' code.""")
hirescam = gradient_cam(hirescam_weights, "hirescam", """HiResCAM (Draelos & Carin 2020,
arXiv:2011.08891): ``ReLU(sum_k dS/dA_k * A_k)``.""")
xgradcam = gradient_cam(xgradcam_weights, "xgradcam", """XGrad-CAM (Fu et al. 2020,
arXiv:2008.02312): ``alpha_k = sum_ij A_kij g_kij / sum_ij A_kij``.""")
layercam = gradient_cam(layercam_weights, "layercam", """LayerCAM (Jiang et al. 2021, IEEE
TIP 30:5875): ``ReLU(sum_k ReLU(dS/dA_k) * A_k)``.""")


# ------------------------------------------------------------------ CAM (Zhou et al.)


@dataclasses.dataclass
class _LinearCall:
    module: nn.Linear
    after_layer: bool
    features: torch.Tensor
    output: torch.Tensor


def classifier_after(model: nn.Module, inputs: torch.Tensor,
                     layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor, nn.Linear]:
    """``(scores, acts, linear)``: the layer's activations and the last ``nn.Linear``
    run after the layer whose ``in_features`` is the layer's channel count, checked to
    be a GAP + linear head (its input is the spatial mean of the activations and its
    output is the model's output)."""
    calls: list[_LinearCall] = []
    capture = LayerCapture(layer, _describe(layer), check=spatial_output(layer))
    probe = ChannelLastProbe(model)

    def record(module: nn.Module, args: Any, output: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.append(_LinearCall(module, capture.calls > 0, args[0], output))

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with capture, forward_hooks([(m, record) for m in linears]), forward_hooks(probe.hooks()), \
            torch.no_grad():
        scores = capture.run(model, inputs)
    acts = capture.output
    require_channels_first(model, layer, acts, inputs, probe)
    channels = acts.shape[1]
    head = ("CAM (Zhou et al. 2016) needs a model that ends in global average pooling + "
            "nn.Linear after the explained layer")
    after = [c for c in calls if c.after_layer and c.module.in_features == channels]
    if not after:
        raise LayerError(
            f"{head}: no nn.Linear with in_features={channels} (the channels of layer "
            f"{_describe(layer)}) runs after it. Use 'gradcam', which works on any model and "
            "equals CAM up to a constant factor on GAP + linear models"
        )
    fc = after[-1]
    pooled = acts.mean(dim=(2, 3))
    features = fc.features.reshape(pooled.shape) if fc.features.numel() == pooled.numel() else None
    if features is None or not torch.allclose(features, pooled, rtol=1e-4, atol=1e-5 * float(
            pooled.abs().max().clamp(min=1))):
        raise LayerError(
            f"{head}: the input of the last nn.Linear({channels}, ...) is not the spatial mean "
            f"of layer {_describe(layer)}'s output. Use 'gradcam' for this model"
        )
    if fc.output.shape != scores.shape or not torch.allclose(fc.output, scores):
        raise LayerError(
            f"{head}: the output of the last nn.Linear({channels}, ...) is not the model's "
            "output. Use 'gradcam' for this model"
        )
    return scores, acts, fc.module


@torch_kernel(autograd=False, thread_safe=True)
def cam(model, inputs, target, layer, *, relu: bool) -> torch.Tensor:
    """CAM (Zhou et al. 2016, arXiv:1512.04150): ``ReLU(sum_k w_ck A_k)`` with ``w_c``
    the classifier row of class ``c`` of a GAP + linear head (no bias)."""
    _, acts, fc = classifier_after(model, inputs, layer)
    weights = fc.weight.detach()[target.classes].to(acts.dtype)
    return weighted_map(acts, weights[:, :, None, None], relu=relu)


# ------------------------------------------------------------------ gradient-free CAMs


@torch_kernel(autograd=False, thread_safe=True)
def scorecam(model, inputs, target, layer, *, forward_batch_size: int | None, align_corners: bool,
             relu: bool, layout: str | None = None, prefix_tokens: int | None = None,
             grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Score-CAM (Wang et al. 2020, arXiv:1910.01279): each activation map, upsampled
    to the input and min-max normalised, masks the input; ``alpha = softmax_k`` of
    the target scores of the ``C`` masked inputs."""
    step = None if forward_batch_size is None else _check_batch_size(forward_batch_size)
    request = LayoutRequest.parse(layout, prefix_tokens, grid)
    with torch.no_grad():
        _, acts, _ = layer_activations(model, inputs, layer, request)
        batch, channels = acts.shape[:2]
        if step is None:  # as many rows as the memory budget holds
            step = rows_per_chunk(measure(model, inputs, grad=False), total=batch * channels)
        flat = acts.reshape(batch * channels, 1, *acts.shape[2:])
        image = torch.arange(batch, device=inputs.device).repeat_interleave(channels)
        masked_scores = []
        with progress(batch * channels, "scorecam", unit="image") as bar:
            for start in range(0, batch * channels, step):
                rows = slice(start, start + step)
                up = F.interpolate(flat[rows], size=inputs.shape[-2:], mode="bilinear",
                                   align_corners=align_corners)
                low = up.amin(dim=(2, 3), keepdim=True)
                high = up.amax(dim=(2, 3), keepdim=True)
                masks = (up - low) / (high - low + SCORECAM_EPS)
                outputs = model(inputs[image[rows]] * masks)
                masked_scores.append(target.select_rows(outputs, image[rows]))
                bar.update(len(outputs))
        weights = torch.cat(masked_scores).reshape(batch, channels).softmax(dim=1)
        return weighted_map(acts, weights[:, :, None, None].to(acts.dtype), relu=relu)


def top_right_singular_vector(x: torch.Tensor) -> torch.Tensor:
    """First right singular vector of each ``(n, C)`` matrix, ``(B, C)`` (sign arbitrary).

    Computed from the smaller Gram matrix in float64 (``eigh`` of ``x^T x`` when
    ``n >= C``, else of ``x x^T`` mapped back by ``x^T u``), which is much cheaper
    than a full SVD when ``n`` and ``C`` differ, and as accurate for the top vector.
    """
    x64 = x.double()
    if x.shape[1] >= x.shape[2]:
        _, vecs = torch.linalg.eigh(x64.transpose(1, 2) @ x64)
        v = vecs[..., -1]
    else:
        _, vecs = torch.linalg.eigh(x64 @ x64.transpose(1, 2))
        v = (x64.transpose(1, 2) @ vecs[..., -1:])[..., 0]
        v = v / v.norm(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float64).tiny)
    return v.to(x.dtype)


def first_component(acts: torch.Tensor) -> torch.Tensor:
    """Projection of each position's (centred) channel vector on the first principal
    direction ``v``, ``(B, 1, h, w)``; ``v`` is oriented so that ``sum_k v_k >= 0``
    (the map then correlates positively with the channel-mean activation)."""
    batch, channels, height, width = acts.shape
    x = acts.reshape(batch, channels, height * width).transpose(1, 2)
    x = x - x.mean(dim=1, keepdim=True)
    v = top_right_singular_vector(x)
    sign = torch.where(v.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(v.dtype)
    projection = x @ (v * sign)[:, :, None]
    return projection.reshape(batch, 1, height, width)


@torch_kernel(autograd=False, thread_safe=True)
def eigencam(model, inputs, target, layer, *, relu: bool, layout: str | None = None,
             prefix_tokens: int | None = None, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020, arXiv:2008.00299): the activations projected
    on their first principal component (class-agnostic)."""
    request = LayoutRequest.parse(layout, prefix_tokens, grid)
    with torch.no_grad():
        _, acts, _ = layer_activations(model, inputs, layer, request)
        projection = first_component(acts)
        return projection.clamp(min=0) if relu else projection


# ------------------------------------------------------------------ Guided Grad-CAM


@torch_kernel(thread_safe=True)
def guided_gradcam(model, inputs, target, layer, *, interpolate_mode: str, layout: str | None = None,
                   prefix_tokens: int | None = None, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation times the
    Grad-CAM map upsampled to the input size, ``(B, C, H, W)``."""
    from attribkit.torch.gradients import guided_gradient

    if interpolate_mode not in ("bilinear", "nearest", "bicubic", "area", "nearest-exact"):
        raise InvalidOptionError(
            f"interpolate_mode must be 'bilinear', 'nearest', 'nearest-exact', 'bicubic' or "
            f"'area', got {interpolate_mode!r}"
        )
    acts, grads = layer_gradients(model, inputs, target, layer,
                                  LayoutRequest.parse(layout, prefix_tokens, grid))
    heat = weighted_map(acts, gradcam_weights(acts, grads), relu=True)
    extra = {"align_corners": False} if interpolate_mode in ("bilinear", "bicubic") else {}
    heat = F.interpolate(heat, size=inputs.shape[-2:], mode=interpolate_mode, **extra)
    return guided_gradient(model, inputs, target) * heat
