"""Black-box (perturbation) methods: they need only ``predict(batch) -> scores``.

The public API for perturbation kernels, built-in or from a plugin:

- :func:`forward_kernel` turns ``kernel(predict, inputs, target, **options)``
  into a method implementation that accepts PyTorch modules, ONNX Runtime
  sessions and NumPy callables alike;
- :func:`masked_scores` scores every image under every mask, all in batched
  model calls, which is what occlusion, RISE and their relatives are made of.
"""

from attribkit.perturbation.masks import masked_scores
from attribkit.perturbation.runner import forward_kernel

__all__ = ["forward_kernel", "masked_scores"]
