"""Models of other frameworks (JAX/Flax, Keras 3, ...) behind the same :func:`attribkit.explain`.

A framework plugin registers a :class:`~attribkit.backends.spec.BackendSpec` through the
``register_backends(register)`` hook: which models it claims (a cheap test that imports
nothing) and a factory that wraps a claimed model as a
:class:`~attribkit.backends.protocol.FrameworkModel` — the few things a method needs from a
model: scores for a batch, the gradient of the target scores with respect to the input, a
layer's activations and their gradients. The kernels whose mathematics is framework-free
(:mod:`attribkit.backends.kernels`: saliency, input × gradient, integrated gradients,
SmoothGrad, the gradient CAMs, Eigen-CAM) are written once against that protocol and share
their formulas with the PyTorch kernels; forward-only methods and metrics call the model
through :func:`attribkit.predict.as_predict`. ``docs/frameworks.md`` is the user's page.
"""

from attribkit.backends.protocol import FrameworkModel, LayerGradients
from attribkit.backends.spec import BackendSpec

__all__ = ["BackendSpec", "FrameworkModel", "LayerGradients"]
