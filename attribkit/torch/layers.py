"""Layer resolution: a module, a dotted name, or ``None`` for automatic choice.

The automatic choice is the last layer whose output is still spatial (TorchCAM's
rule) among the layers whose output has the image batch (a detector's RoI pooling
returns one row per proposal: never chosen) and reaches the explained score (a
detector's region-proposal head feeds the output only through detached proposals:
never chosen); on a model with a ``backbone`` (torchvision's detectors and segmenters),
the last such layer inside the backbone (the heads' convolutions predict per anchor or
per pixel: RetinaNet's and SSD's are zero after Grad-CAM's ReLU, FCOS's centre-ness has
one channel), except on vision transformers (:func:`attribkit.torch.layout.token_layout`),
where it is the last block's first norm (timm ``blocks[-1].norm1``, torchvision
``encoder.layers[-1].ln_1``): the classifier reads only the class token of the last
block's output, so the patch tokens there get no gradient; the input of the last
block's attention is the last place where the patch tokens still reach the class
token (pytorch-grad-cam documents the same choice).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from attribkit.errors import LayerError
from attribkit.torch.capture import forward_hooks
from attribkit.torch.layout import token_layout


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The dotted name of ``layer`` inside ``model`` (``LayerError`` if absent)."""
    for name, module in model.named_modules():
        if module is layer:
            return name
    raise LayerError(
        f"the given layer {type(layer).__name__} is not a submodule of the model "
        f"{type(model).__name__}"
    )


def transformer_layer(model: nn.Module) -> str | None:
    """The default layer of a vision transformer, the last block's first norm (see the
    module docstring); ``None`` if ``model`` is not a recognised ViT. ``LayerError`` for
    a ViT whose blocks are not found."""
    if token_layout(model, None) is None:
        return None
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.Sequential | nn.ModuleList) and len(blocks) and hasattr(blocks[-1], "norm1"):
        return layer_name(model, blocks[-1].norm1)
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    if isinstance(layers, nn.Sequential) and len(layers) and hasattr(layers[-1], "ln_1"):
        return layer_name(model, layers[-1].ln_1)
    raise LayerError(f"{type(model).__name__} is a vision transformer but its blocks were not found; "
                     "pass layer= (the last block's first norm is the usual choice)")


def find_spatial_layer(model: nn.Module, probe: torch.Tensor, target: Any = None) -> str:
    """Name of the last module, in forward-completion order, whose output is a
    ``(B, C, H, W)`` tensor with ``H * W > 1`` and ``B`` the probe's batch (TorchCAM's
    rule, found on the actual input), and, given the probe's ``target``
    (a :class:`~attribkit.torch.targets.ChunkTarget`), on the autograd path to its score.

    Runs one forward pass of ``probe`` (with a graph, not differentiated: the path is
    read from the graph's nodes); the probe hooks (thread-keyed,
    :mod:`attribkit.torch.capture`) are removed before returning. Vision transformers
    get :func:`transformer_layer` instead (no forward).
    """
    vit = transformer_layer(model)
    if vit is not None:
        return vit
    finished: list[tuple[str, Any]] = []
    skipped: list[str] = []

    def record(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-2:].numel() > 1:
                if output.shape[0] == len(probe):
                    finished.append((name, output.grad_fn))
                else:
                    skipped.append(name)
        return hook

    if torch.is_inference_mode_enabled() or probe.is_inference():
        target = None  # no graph to read (forward-only methods may run under inference_mode)
    hooks = [(m, record(name)) for name, m in model.named_modules() if name]
    with forward_hooks(hooks), torch.set_grad_enabled(target is not None):
        output = model(probe.detach().requires_grad_(target is not None))
    if target is not None and finished:
        reached = graph_nodes(target.select(output))
        on_path = [name for name, node in finished if node is not None and node in reached]
        in_backbone = [name for name in on_path if name == "backbone" or name.startswith("backbone.")]
        if in_backbone and isinstance(getattr(model, "backbone", None), nn.Module):
            return in_backbone[-1]
        if not on_path:
            raise LayerError(
                f"no layer of {type(model).__name__} with a spatial (B, C, H, W) output reaches the "
                f"target score (spatial layers: {', '.join(n for n, _ in finished[-4:])}); pass layer= "
                "explicitly")
        return on_path[-1]
    if not finished:
        raise LayerError(
            f"no layer of {type(model).__name__} has a spatial (B, C, H, W) output with the image "
            f"batch for inputs of shape {tuple(probe.shape)}"
            + (f" (layers with another batch, such as RoI pooling, are never chosen: "
               f"{', '.join(skipped[-3:])})" if skipped else "") + "; pass layer= explicitly"
        )
    return finished[-1][0]


def graph_nodes(score: torch.Tensor) -> set:
    """Every autograd node ``score`` depends on (a walk of ``grad_fn.next_functions``)."""
    seen: set = set()
    stack = [score.grad_fn] if score.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return seen


def resolve_layer(model: Any, layer: nn.Module | str | None,
                  probe: torch.Tensor, target: Any = None) -> tuple[nn.Module, str]:
    """Return ``(module, dotted_name)`` for a module, a name, or ``None`` (auto-pick;
    ``target``, the probe rows' :class:`~attribkit.torch.targets.ChunkTarget`, restricts
    it to layers on the path to the target score)."""
    if not isinstance(model, nn.Module):
        raise LayerError("layer methods need an nn.Module model, got "
                         f"{type(model).__name__}")
    if layer is None:
        layer = find_spatial_layer(model, probe[:2], target)
    if isinstance(layer, nn.Module):
        return layer, layer_name(model, layer)
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer in modules and layer:
            return modules[layer], layer
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise LayerError(f"layer {layer!r} is not in the model {type(model).__name__}{hint}")
    raise LayerError(f"layer must be an nn.Module, a dotted name or None, got {type(layer).__name__}")
