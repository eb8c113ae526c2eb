"""Apply a composite to a model for the duration of a call.

Each module with a rule gets, for the call, an instance ``forward`` that routes it
through the rule's autograd function (:mod:`attribkit.torch.lrp.rules`): the
ordinary forward, the rule's relevance as its backward. The overrides are removed
in ``finally``; the model's parameters and buffers are never written (merged
BatchNorm parameters are new tensors held by the overrides), so the weights are
bit-identical afterwards. The overrides are attributes of shared modules, so calls
on one model take turns (the kernel is not ``thread_safe``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from attribkit.torch.lrp.canonizers import (
    merge_batchnorms,
    merged_batchnorm_forward,
    residual_block_forward,
    residual_blocks,
)
from attribkit.torch.lrp.composites import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    AFFINE,
    AVGPOOLS,
    BATCHNORMS,
    CONVOLUTIONS,
    GRADIENT,
    LRPRuleError,
    first_layer,
    no_rule_error,
    transformer_leaf,
)
from attribkit.torch.lrp.rules import Affine, AffineRule, NormRule, PassRule, ResidualSum, Rule, Rules
from attribkit.torch.lrp.transformer_rules import affine, identity, exact_of

Forward = Callable[[torch.Tensor], torch.Tensor]
_MISSING = object()


def _out_of_place(module: nn.Module, forward: Forward) -> Forward:
    """``forward`` that leaves its input alone (an autograd function may not change it)."""
    if isinstance(module, nn.ReLU):
        return torch.relu
    if getattr(module, "inplace", False):
        return lambda x: forward(x.clone())
    return forward


def plan(model: nn.Module, rules: Rules, *, canonize: bool) -> dict[nn.Module, Forward]:
    """The forward override of every module that needs one, or :class:`LRPRuleError`
    naming the first module that no rule covers."""
    merged, merged_bns = merge_batchnorms(model) if canonize else ({}, [])
    blocks = set(residual_blocks(model))
    if blocks and not canonize:
        name = next(n for n, m in model.named_modules() if m in blocks)
        raise LRPRuleError(f"module {name!r} ({type(model.get_submodule(name)).__name__}) adds its "
                           "residual inside forward(); LRP needs the ResNet canonizer: canonize=True")
    first = first_layer(model, rules)
    overrides: dict[nn.Module, Forward] = {}
    gradient_form = rules.attention is not None  # the transformer composites' rules
    for name, module in model.named_modules():
        if module in blocks:
            overrides[module] = residual_block_forward(module, torch.add if gradient_form else (
                lambda a, b: ResidualSum.apply(a, b, rules.stabilizer)))
            continue
        if next(module.children(), None) is not None:
            continue  # a container: its children carry the rules
        forward = module.forward
        if isinstance(module, AFFINE):
            rule = rules.first if module is first else (
                rules.conv if isinstance(module, CONVOLUTIONS) else rules.linear)
            weight, bias = merged.get(module, (module.weight.detach(),
                                               None if module.bias is None else module.bias.detach()))
            layer = Affine(module, weight, bias)
            overrides[module] = (_epsilon_forward(layer, rule.epsilon) if gradient_form
                                 else _affine_forward(layer, rule))
        elif isinstance(module, BATCHNORMS) and module in merged_bns:
            overrides[module] = merged_batchnorm_forward
        elif isinstance(module, BATCHNORMS + ACTIVATIONS) or (gradient_form and
                                                             type(module).__name__ in ACTIVATION_NAMES):
            fn = _out_of_place(module, forward)
            overrides[module] = (_identity_forward(fn, rules.stabilizer, exact_of(module)) if gradient_form
                                 else _pass_forward(fn))
        elif isinstance(module, AVGPOOLS):
            if not gradient_form:  # in gradient form, the gradient is the rule
                overrides[module] = _norm_forward(forward, rules.stabilizer)
        elif gradient_form and transformer_leaf(module):
            continue  # its functional calls meet the rules of transformer_mode
        elif not isinstance(module, GRADIENT):
            raise no_rule_error(name, module, rules)
    return overrides


def _affine_forward(layer: Affine, rule: Rule) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return AffineRule.apply(x, layer, rule)
    return forward


def _epsilon_forward(layer: Affine, epsilon: float) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return affine(x, layer, epsilon)
    return forward


def _identity_forward(fn: Forward, stabilizer: float, exact: Callable | None) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return identity(x, fn, stabilizer, exact)
    return forward


def _pass_forward(fn: Forward) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return PassRule.apply(x, fn)
    return forward


def _norm_forward(fn: Forward, stabilizer: float) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        return NormRule.apply(x, fn, stabilizer)
    return forward


@contextlib.contextmanager
def overridden(overrides: dict[nn.Module, Forward]) -> Iterator[None]:
    """Set each module's instance ``forward`` for the body; put back what was there
    (nothing, or a forward the user had set) in ``finally``."""
    saved: list[tuple[nn.Module, object]] = []
    try:
        for module, forward in overrides.items():
            saved.append((module, module.__dict__.get("forward", _MISSING)))
            object.__setattr__(module, "forward", forward)
        yield
    finally:
        for module, old in reversed(saved):
            if old is _MISSING:
                module.__dict__.pop("forward", None)
            else:
                object.__setattr__(module, "forward", old)


@contextlib.contextmanager
def composite_applied(model: nn.Module, rules: Rules, *, canonize: bool) -> Iterator[None]:
    """Within the body, a forward and backward of ``model`` compute LRP with ``rules``."""
    with overridden(plan(model, rules, canonize=canonize)):
        yield
