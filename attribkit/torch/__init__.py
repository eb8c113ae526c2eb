"""The PyTorch backend: the model guard, target selection, layer resolution,
the one way to capture a layer's output, and the :func:`torch_kernel` decorator
that turns a per-chunk kernel into a method implementation. Imported only when
a torch method is first used."""

from attribkit.torch.capture import LayerCapture, forward_hook
from attribkit.torch.guard import ModelState, model_guard
from attribkit.torch.layers import resolve_layer
from attribkit.torch.runner import torch_kernel
from attribkit.torch.targets import ChunkTarget

__all__ = ["ChunkTarget", "LayerCapture", "ModelState", "forward_hook", "model_guard",
           "resolve_layer", "torch_kernel"]
