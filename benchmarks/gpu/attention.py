"""Section ``attention``: the attention family, AttnLRP and CP-LRP on timm's deit_small
(random weights, a random head) against their floors, as
``benchmarks/test_bench_attention.py`` does on deit_tiny.

Floors: one forward without gradients for the forward-only methods, one forward +
backward to the input for those that need autograd (and for the LRP rows). AttnLRP is
``explain(vit, x, method="lrp", composite="attnlrp")``, CP-LRP the same with
``composite="cp_lrp"`` (target: within 1.5x the forward + backward); a composite that
does not run on the model gives a "not available" row with attribkit's own message.
"""

from __future__ import annotations

import importlib.util

import torch

import attribkit as ak
from benchmarks.gpu.config import Config
from benchmarks.gpu.measure import ATTRIBKIT, FLOOR, Impl, Row, compare, reason_of, skipped
from benchmarks.shared import built_in, floor_of, forward, forward_backward

SECTION = "attention"
LRP_COMPOSITES = ("attnlrp", "cp_lrp")


def run(config: Config) -> list[Row]:
    """Rows of every attention method and of AttnLRP and CP-LRP on ``config.vit``."""
    methods = built_in("attention", every=False)
    if importlib.util.find_spec("timm") is None:
        return [skipped(SECTION, m, ATTRIBKIT, "attribkit", "timm is not installed")
                for m in [*methods, *LRP_COMPOSITES]]
    model = vit(config)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(config.vit_batch, 3, config.vit_size, config.vit_size, generator=gen).to(config.device)
    targets = torch.arange(config.vit_batch, device=config.device) % 1000
    floors = {"forward": Impl(FLOOR, "forward", lambda: forward(model, x)),
              "forward+backward": Impl(FLOOR, "forward+backward", lambda: forward_backward(model, x, targets))}
    rows: list[Row] = []
    for method in methods:
        ours = Impl(ATTRIBKIT, "attribkit", lambda method=method: ak.explain(model, x, targets, method=method))
        rows += compare(SECTION, method, [floors[floor_of(ak.get_method(method))], ours], config)
    for composite in LRP_COMPOSITES:
        missing = lrp_missing(model, x[:1], targets[:1], composite)
        ours = Impl(ATTRIBKIT, "attribkit", None if missing else (
            lambda composite=composite: ak.explain(model, x, targets, method="lrp", composite=composite)),
            reason=missing and f"not available: {missing}")
        rows += compare(SECTION, composite, [floors["forward+backward"], ours], config)
    return rows


def vit(config: Config) -> torch.nn.Module:
    """``config.vit`` from timm at ``config.vit_size`` px, random weights (seed 0), its
    head drawn at random too (a fresh timm head may be zero)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(config.vit, pretrained=False, img_size=config.vit_size)
        head = model.get_classifier()
        with torch.no_grad():
            torch.nn.init.normal_(head.weight, std=0.02)
            torch.nn.init.normal_(head.bias, std=0.02)
    return model.eval().to(config.device)


def lrp_missing(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, composite: str) -> str | None:
    """``None`` when ``explain(..., method="lrp", composite=composite)`` runs on one
    image, else why not (attribkit's message)."""
    try:
        ak.explain(model, x, targets, method="lrp", composite=composite)
    except Exception as exc:  # noqa: BLE001 - any refusal means "not available", with its reason
        return reason_of(exc)
    return None
