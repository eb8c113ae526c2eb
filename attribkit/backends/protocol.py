"""What a method needs from a model of another framework: :class:`FrameworkModel`.

Arrays cross the protocol as NumPy arrays in the **model's own layout** (``layout``:
``"NHWC"`` for JAX/Flax and Keras convolutions, ``"NCHW"`` for PyTorch); attribkit turns the
results channel-first (``(B, C, H, W)`` pixel maps, ``(B, 1, h, w)`` layer maps) so that the
visualiser, the metrics, the store and the report read them as any other
:class:`~attribkit.result.Attribution`. Every call is for one batch; attribkit chunks.

``classes`` is one class index per row (``(B,)`` int64): the target score of row ``b`` is
``scores[b, classes[b]]``, and a gradient is that of ``Σ_b scores[b, classes[b]]``. ``None``
means each row's top class (the argmax of its scores), chosen inside the same forward: one
forward and one backward explain the predictions. A class out of range (``>= K``) must not
raise: clamp it; attribkit reads ``K`` from the returned scores and raises a
:class:`~attribkit.errors.TargetError` naming it.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import numpy as np


@dataclasses.dataclass(frozen=True)
class LayerGradients:
    """What a pass through a layer gives: the model's ``scores`` ``(B, K)``, the layer's
    ``activations`` and their ``gradients`` (same shape, the model's layout: ``(B, h, w, C)``
    for an NHWC model; ``None`` from a forward only)."""

    scores: np.ndarray
    activations: np.ndarray
    gradients: np.ndarray | None = None


@runtime_checkable
class FrameworkModel(Protocol):
    """A model of another framework, as attribkit's framework-free kernels see it.

    Attributes:
        framework: the framework's name, for results and messages (``"jax"``, ``"keras"``).
        layout: the input's layout, ``"NHWC"`` or ``"NCHW"`` (also that of the layers'
            activations).
    """

    framework: str
    layout: str

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The model's ``(B, K)`` scores (logits) for the batch ``x`` (no gradient)."""

    def input_gradients(self, x: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, grad)``: the forward's ``(B, K)`` scores and ``∂ Σ_b scores[b, classes[b]] / ∂x``
        (the shape of ``x``), in one forward and one backward."""

    def resolve_layer(self, layer: object, x: np.ndarray) -> str:
        """The canonical name of ``layer`` (a name as the framework writes it, or ``None`` for
        the last layer with a spatial output on the batch ``x``, whose shapes the choice may
        need); a :class:`~attribkit.errors.LayerError` naming the layers there are when it
        does not exist."""

    def layer_gradients(self, x: np.ndarray, layer: str, classes: np.ndarray | None) -> LayerGradients:
        """The activations of ``layer`` (a name :meth:`resolve_layer` gave) and the gradients of
        ``Σ_b scores[b, classes[b]]`` with respect to them, in one forward and one backward.
        The model is not edited."""

    def layer_activations(self, x: np.ndarray, layer: str) -> LayerGradients:
        """The scores and the activations of ``layer`` in one forward (``gradients`` is ``None``)."""
