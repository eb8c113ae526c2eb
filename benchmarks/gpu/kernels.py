"""Section ``kernels``: attribkit's own gradient and CAM methods (pixel and layer maps,
read from the registry as ``benchmarks/test_kernels.py`` does) against their floors
and against the same method in Captum, pytorch-grad-cam and TorchCAM.

Floors: forward + backward to the input for the gradient family, one forward without
gradients for the CAM family's layer maps.
"""

from __future__ import annotations

import torch

import attribkit as ak
from benchmarks.gpu.config import Config
from benchmarks.gpu.measure import ATTRIBKIT, FLOOR, Impl, Row, compare, peer_impls
from benchmarks.shared import built_in, forward, forward_backward, torchvision_model

SECTION = "kernels"
LAYER = "layer4"


def run(config: Config) -> list[Row]:
    """Rows of every gradient and CAM method on ``config.cnn`` (random weights)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision_model(config.cnn).to(config.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(config.batch, 3, config.size, config.size, generator=gen).to(config.device)
    targets = torch.arange(config.batch, device=config.device) % 1000
    layer = getattr(model, LAYER)
    rows: list[Row] = []
    for method in built_in("gradient", every=False):
        floor = Impl(FLOOR, "forward+backward", lambda: forward_backward(model, x, targets))
        rows += compare(SECTION, method, [floor, *_ours_and_peers(model, x, targets, method, None)], config)
    for method in built_in("cam", every=False, output="layer"):
        floor = Impl(FLOOR, "forward", lambda: forward(model, x))
        rows += compare(SECTION, method, [floor, *_ours_and_peers(model, x, targets, method, layer)], config)
    return rows


def _ours_and_peers(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, method: str,
                    layer: torch.nn.Module | None) -> list[Impl]:
    """attribkit's call of ``method`` and each installed peer's."""
    options = {} if layer is None else {"layer": layer}
    ours = Impl(ATTRIBKIT, "attribkit", lambda: ak.explain(model, x, targets, method=method, **options))
    return [ours, *peer_impls(method, lambda peer: lambda: peer(model, x, targets, layer))]
