"""Section ``lrp``: attribkit's LRP with each composite that Zennit also has, against
Zennit (``attribkit.bench.peers``) and against one forward + backward to the input,
as ``benchmarks/test_bench_lrp.py`` does (same model: random weights, non-trivial
BatchNorm statistics)."""

from __future__ import annotations

import torch

import attribkit as ak
from benchmarks.gpu.config import Config
from benchmarks.gpu.measure import ATTRIBKIT, FLOOR, Impl, Row, compare, peer_impls
from benchmarks.shared import forward_backward, lrp_model, lrp_variant

SECTION = "lrp"
COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_plus")


def run(config: Config) -> list[Row]:
    """Rows of LRP with each of :data:`COMPOSITES` on ``config.lrp_model``."""
    model = lrp_model(config.lrp_model, config.device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(config.lrp_batch, 3, config.size, config.size, generator=gen).to(config.device)
    targets = torch.arange(config.lrp_batch, device=config.device) % 1000
    rows: list[Row] = []
    for composite in COMPOSITES:
        impls = [Impl(FLOOR, "forward+backward", lambda: forward_backward(model, x, targets)),
                 Impl(ATTRIBKIT, "attribkit",
                      lambda composite=composite: ak.explain(model, x, targets, method="lrp", composite=composite)),
                 *peer_impls(lrp_variant(composite), lambda peer: lambda: peer(model, x, targets, None))]
        rows += compare(SECTION, f"lrp {composite}", impls, config)
    return rows
