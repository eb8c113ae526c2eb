"""CAMLoss: a differentiable Grad-CAM / CAM of the true class, penalised where it
should not be ("interpretability as a feedback loop")."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attribkit.errors import GradientModeError, InputError, InvalidOptionError, LayerError, TargetError
from attribkit.torch.cam import gradcam_weights, image_like_output, weighted_map
from attribkit.torch.attention import AttentionRecorder
from attribkit.torch.capture import LayerCapture, forward_hooks
from attribkit.torch.layout import ChannelLastProbe, Layout, LayoutRequest, resolve_layout
from attribkit.torch.guard import model_guard
from attribkit.torch.layers import resolve_layer
from attribkit.training.base import (LossOutput, _Recorder, _WatchingLoss, _reduce,
                                     _spatial_mask, centre_kernel)


class CAMLoss(_WatchingLoss):
    r"""Penalise Grad-CAM / CAM mass of the true class where it should not be.

    For image ``i`` with label ``y_i``, layer activations ``A`` ``(C, h, w)``
    and class score ``S = logits[i, y_i]``:

    * ``method="gradcam"`` (Selvaraju et al. 2017): the map
      :math:`M = \sum_k \alpha_k A_k`,
      :math:`\alpha_k = \frac{1}{hw}\sum_{uv} \partial S / \partial A_{kuv}`, with the
      gradient taken by ``torch.autograd.grad(..., create_graph=True)`` so that the
      penalty is differentiable w.r.t. the parameters (a double backward);
    * ``method="cam"`` (Zhou et al. 2016): :math:`M = \sum_k w_{y_i k} A_k`
      with ``w`` the weight of ``classifier`` (default: the last ``nn.Linear`` whose
      ``in_features`` equals the layer's channels). Valid for a global-average-pooling
      + linear head, on which it equals Grad-CAM up to the factor ``hw`` (so after the
      normalisation both give the same penalty); it needs no double backward.

    The mass is :math:`L = |M|` (``mass="abs"``, default) or Grad-CAM's usual
    :math:`L = \mathrm{ReLU}(M)` (``mass="relu"``). ``"relu"`` has a loophole a
    trained model finds (we measured it in ``attribkit bench feedback``): it
    zeroes its penalty by making the true class's map *negative* everywhere,
    which has no positive mass anywhere, while still using the forbidden region.
    ``"abs"`` counts evidence of either sign, so on a GAP + linear head (where the
    score is the spatial mean of ``M`` plus a bias) a zero penalty means the score
    depends on the allowed region only.

    ``L`` is resized bilinearly (``align_corners=False``, as
    :func:`attribkit.evaluation.functional.pixel_relevance`) to the input's ``H, W`` and
    normalised to unit mass, :math:`\hat L = L / (\sum_p L_p + \epsilon)`. The
    penalty of the image is the mass-weighted kernel

    .. math:: P_i = \sum_p \hat L_p \, K_p, \qquad
              K = \mathrm{kernel} \cdot (1 - \mathrm{allowed}_i),

    i.e. with ``kernel="centre"`` the mean normalised distance of the attribution
    from the image centre (:func:`centre_kernel`), and with an ``allowed`` mask
    the **fraction of the mass outside the allowed region** (both in ``[0, 1]``).
    The loss returns ``weight * mean_i P_i`` (``reduction="mean"``).

    An image whose ``L`` is zero everywhere has ``P_i = 0``.

    Parameters
    ----------
    model:
        The network being trained; it must map ``(B, C, H, W)`` images to ``(B, K)`` scores.
    layer:
        A module, a dotted name (``"features.9"``) or ``None``: the last layer with a
        spatial output, found once by a probe forward of one image in eval mode
        (restored afterwards) at the first call.
    weight:
        The factor of the penalty.
    kernel:
        ``"centre"`` (:func:`centre_kernel` at the input size), a tensor ``(H, W)`` or
        ``(B, H, W)`` of per-pixel penalty weights, or ``None`` (a kernel of ones: only
        ``allowed`` counts). With both ``kernel`` and ``allowed`` the weights multiply.
    method, classifier:
        ``"gradcam"`` (any model) or ``"cam"`` (GAP + linear head, see above).
    mass:
        ``"abs"`` (default) or ``"relu"``, see above.
    layout, prefix_tokens, grid:
        How to read the layer's output, as for the CAM methods
        (:mod:`attribkit.torch.layout`): by default read from the model, so a
        channel-last ``(B, h, w, C)`` layer (Swin, inside ConvNeXt blocks) and a
        vision transformer's tokens ``(B, N, C)`` (the prefix tokens dropped, the
        patches on their grid) are converted to ``(B, C, h, w)``, never misread as
        channels-first; a layout that cannot be read raises a ``LayerError`` naming
        ``layout=``, which always overrides. ``method="cam"`` takes channels-first
        and channel-last layers, not tokens (a ViT's head reads the class token, not
        pooled patches).
    eps:
        The normaliser's epsilon.

    Call ``loss(images, labels, allowed=None)`` -> :class:`LossOutput`
    ``(logits, penalty, maps)``; ``allowed`` is a bool/float mask ``(B, H, W)``
    (or ``(H, W)``) at the input resolution, 1 where attribution is allowed.

    Notes: in train mode, BatchNorm layers *after* the explained layer couple the
    images of a batch, so each image's Grad-CAM then also carries (small) terms of
    the others' scores, exactly as its training loss does. Grad-CAM's channel
    weights come from the score of the true class; no softmax.
    """

    def __init__(self, model: nn.Module, layer: nn.Module | str | None = None, *, weight: float = 1.0,
                 kernel: str | torch.Tensor | None = "centre", method: str = "gradcam",
                 classifier: nn.Linear | None = None, mass: str = "abs", eps: float = 1e-8,
                 reduction: str = "mean", layout: str | None = None, prefix_tokens: int | None = None,
                 grid: Any = None) -> None:
        super().__init__(model, weight, reduction)
        if method not in ("gradcam", "cam"):
            raise InvalidOptionError(f"CAMLoss method must be 'gradcam' or 'cam', got {method!r}")
        if mass not in ("abs", "relu"):
            raise InvalidOptionError(f"CAMLoss mass must be 'abs' or 'relu', got {mass!r}")
        self.method = method
        self.mass = mass
        self.layout_request = LayoutRequest.parse(layout, prefix_tokens, grid)
        self._probe: ChannelLastProbe | None = None
        self.last_layout: Layout | None = None  # the layout read at the last penalty
        self.eps = float(eps)
        if isinstance(kernel, str):
            if kernel not in ("centre", "center"):
                raise InvalidOptionError(f"kernel must be 'centre', a tensor or None, got {kernel!r}")
            self.kernel_kind = "centre"
            self.register_buffer("kernel", None)
        elif kernel is None:
            self.kernel_kind = "none"
            self.register_buffer("kernel", None)
        else:
            self.kernel_kind = "tensor"
            self.register_buffer("kernel", torch.as_tensor(kernel, dtype=torch.float32))
        self._layer_arg = layer
        self.layer_name: str | None = None
        self._set_layer(None)
        if layer is not None:
            module, self.layer_name = resolve_layer(model, layer, torch.empty(0))
            self._set_layer(module)
        object.__setattr__(self, "classifier", classifier)

    # ------------------------------------------------------------------ hooks
    def _set_layer(self, module: nn.Module | None) -> None:
        object.__setattr__(self, "_layer", module)  # a reference, not a submodule of the loss

    @property
    def layer(self) -> nn.Module | None:
        """The explained layer (``None`` until the first call when auto-picked)."""
        return self._layer

    def _resolve(self, x: torch.Tensor) -> None:
        """Auto-pick the layer with a probe forward of one image (eval mode, no grad;
        the model's modes and hooks are restored by the guard)."""
        with model_guard(self.model, exclusive=False), torch.no_grad():
            module, self.layer_name = resolve_layer(self.model, None, x[:1].detach())
        self._set_layer(module)

    def _install(self, recorder: _Recorder) -> None:
        def attach(layer: nn.Module) -> None:
            # "graph" mode: A keeps its graph (the penalty is differentiated w.r.t. the
            # parameters); downstream gets a copy, so in-place ops after the layer cannot alter A
            recorder.attach(LayerCapture(layer, repr(self.layer_name), mode="graph",
                                         check=image_like_output(layer)))

        # notes Linear/LayerNorm on the last dimension of 4-D tensors (channel-last parts)
        self._probe = ChannelLastProbe(self.model)
        recorder.stack.enter_context(forward_hooks(self._probe.hooks()))
        if self.method == "gradcam":
            # fused attention (timm, torchvision ViTs) has no double backward on CPU:
            # computed explicitly for the block (a thread-local mode, the model untouched)
            recorder.stack.enter_context(AttentionRecorder(record=False))

        if self._layer is not None:
            attach(self._layer)
            return

        def resolve_pre_hook(_module: nn.Module, args: tuple) -> None:
            # registered after the recording pre-hook; resolves the layer at the first forward
            if self._probing:
                return
            if self._layer is None:
                self._probing = True
                try:
                    self._resolve(args[0])
                finally:
                    self._probing = False
            if self._layer is not None and recorder.capture is None:
                attach(self._layer)

        # model_guard inside _resolve drops hooks added after its capture only, so the
        # watch hooks (added before) survive, and the layer hook is added after it.
        recorder.hook(self.model, resolve_pre_hook, pre=True)

    # ------------------------------------------------------------------ maths
    def _weights(self, size: tuple[int, int], batch: int, allowed: Any,
                 device: Any, dtype: torch.dtype) -> torch.Tensor:
        if self.kernel_kind == "centre":
            k = centre_kernel(size, device=device, dtype=dtype)[None]
        elif self.kernel_kind == "tensor":
            k = _spatial_mask(self.kernel, batch, size, "kernel", device, dtype)
        else:
            k = torch.ones((1, *size), device=device, dtype=dtype)
        if allowed is not None:
            k = k * (1 - _spatial_mask(allowed, batch, size, "allowed", device, dtype))
        return k

    def _layout(self, acts: torch.Tensor, inputs: torch.Tensor) -> Layout:
        """The layout of the recorded layer output (read from the model or ``layout=``)."""
        seen = self._probe.seen if self._probe is not None else None
        found = resolve_layout(self.model, self._layer, repr(self.layer_name), acts,
                               tuple(inputs.shape[-2:]), self.layout_request, seen)
        if self.method == "cam" and found.kind == "BNC":
            raise LayerError(f"CAMLoss(method='cam') needs a GAP + nn.Linear head over a (B, C, h, w) or "
                             f"(B, h, w, C) layer; layer {self.layer_name!r} returns tokens "
                             f"{tuple(acts.shape)} ({found.source}); use method='gradcam'")
        self.last_layout = found
        return found

    def _cam(self, raw: torch.Tensor, layout: Layout, logits: torch.Tensor,
             labels: torch.Tensor) -> torch.Tensor:
        """The raw (pre-ReLU) map ``(B, h, w)`` of the layer output ``raw`` (in
        ``layout``, converted to ``(B, C, h, w)``), differentiable w.r.t. the parameters."""
        acts = layout.to_bchw(raw)
        if self.method == "cam":
            fc = self.classifier
            if fc is None:
                linears = [m for m in self.model.modules()
                           if isinstance(m, nn.Linear) and m.in_features == acts.shape[1]]
                if not linears:
                    raise LayerError(f"CAMLoss(method='cam') needs a GAP + nn.Linear head with in_features="
                                     f"{acts.shape[1]} (layer {self.layer_name!r}); pass classifier= or use "
                                     "method='gradcam'")
                fc = linears[-1]
            weights = fc.weight[labels].to(acts.dtype)[:, :, None, None]  # (B, C, 1, 1)
            return weighted_map(acts, weights, relu=False)[:, 0]
        if raw.grad_fn is None and not raw.requires_grad:
            raise GradientModeError("CAMLoss: the layer's activations carry no autograd graph (the forward "
                                    "ran under torch.no_grad() or the layers before it are frozen and "
                                    "the input needs no grad)")
        score = logits.gather(1, labels[:, None]).sum()
        (grads,) = torch.autograd.grad(score, raw, create_graph=True)
        grads = layout.to_bchw(grads)
        return weighted_map(acts, gradcam_weights(acts, grads), relu=False)[:, 0]

    def _labels(self, labels: Any, logits: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(labels, device=logits.device)
        if labels.ndim == 0:
            labels = labels.expand(len(logits))
        if labels.shape != (len(logits),) or labels.dtype.is_floating_point:
            raise TargetError(f"labels must be {len(logits)} class indices, got {tuple(labels.shape)} "
                              f"{labels.dtype}")
        labels = labels.long()
        if len(labels) and (labels.min() < 0 or labels.max() >= logits.shape[1]):
            raise TargetError(f"labels must lie in 0..{logits.shape[1] - 1}")
        return labels

    def _compute(self, rec: _Recorder, labels: Any, allowed: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if rec.acts is None:
            raise LayerError(f"CAMLoss: layer {self.layer_name!r} was not called by the model's forward")
        logits, acts, x = rec.logits, rec.acts, rec.inputs
        labels = self._labels(labels, logits)
        raw = self._cam(acts, self._layout(acts, x), logits, labels)
        size = tuple(x.shape[-2:])
        cam = (raw.abs() if self.mass == "abs" else F.relu(raw))[:, None]
        if tuple(cam.shape[-2:]) != size:
            cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
        cam = cam[:, 0]
        cam = cam / (cam.sum(dim=(1, 2), keepdim=True) + self.eps)
        weights = self._weights(size, len(cam), allowed, cam.device, cam.dtype)
        per_image = (cam * weights).sum(dim=(1, 2))
        return self.weight * _reduce(per_image, self.reduction), cam

    def penalty(self, labels: Any, allowed: Any = None) -> torch.Tensor:
        """The weighted penalty of the last forward recorded by :meth:`watch`::

            with cam_loss.watch():
                logits = model(x)                       # e.g. inside someone else's train step
                loss = F.cross_entropy(logits, y) + cam_loss.penalty(y, allowed=masks)
        """
        rec = self._recorded()
        try:
            return self._compute(rec, labels, allowed)[0]
        finally:
            rec.clear()

    def forward(self, images: torch.Tensor, labels: Any, allowed: Any = None) -> LossOutput:
        """One forward of the model -> ``LossOutput(logits, penalty, maps)``.

        Under ``torch.no_grad()`` (e.g. to log a validation penalty) the values are
        computed with autograd switched on locally and returned detached."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise InputError(f"images must be a (B, C, H, W) tensor, got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        grad_on = torch.is_grad_enabled()
        if self._layer is None:
            self._resolve(images)
        with torch.enable_grad(), self.watch():
            logits = self.model(images)
            rec = self._recorded()
            penalty, cam = self._compute(rec, labels, allowed)
        if not grad_on:
            logits, penalty, cam = logits.detach(), penalty.detach(), cam.detach()
        return LossOutput(logits, penalty, cam)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, layer={self.layer_name or self._layer_arg!r}, "
                f"method={self.method!r}, mass={self.mass!r}, kernel={self.kernel_kind!r}")
