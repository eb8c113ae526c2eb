"""Composites: which rule each layer of a model gets.

A composite assigns a rule by layer type, with a special rule for the first layer
(the first matching module in ``model.named_modules()`` order, as Zennit does).
Every composite shares the base map: activations pass relevance on, average
pooling and residual sums use the epsilon rule of a parameter-free map (``norm``),
BatchNorm passes relevance on (after merging it is the identity up to its eps).

==========================  ============  ==========  ===================
composite                   convolutions  ``Linear``  first layer
==========================  ============  ==========  ===================
``epsilon_plus_flat``       z+            epsilon     flat (conv or linear)
``epsilon_gamma_box``       gamma         epsilon     zB (a convolution)
``epsilon_alpha2_beta1``    alpha-beta    epsilon     --
``epsilon_plus``            z+            epsilon     --
==========================  ============  ==========  ===================

(Kohlbrenner et al. 2020, "Towards Best Practice in Explaining Neural Network
Decisions with LRP", IJCNN, arXiv:1910.09840; the names are Zennit's.)

Transformers (:mod:`attribkit.torch.lrp.transformer_rules`): ``attnlrp`` (Achtibat et
al. 2024, arXiv:2402.05602) and ``cp_lrp`` (Ali et al. 2022, "XAI for Transformers:
Better Explanations through Conservative Propagation", ICML) put the epsilon rule on
every convolution and linear layer and route attention, normalisation, sums and
products through their rules; they differ in the softmax (the AttnLRP Taylor rule, or
constant attention probabilities).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from attribkit.errors import AttribkitError, InvalidOptionError
from attribkit.torch.lrp.rules import AlphaBeta, Epsilon, Flat, Gamma, Rules, ZBox, ZPlus

CONVOLUTIONS: tuple[type, ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
AFFINE: tuple[type, ...] = (nn.Linear, *CONVOLUTIONS)

#: leaf types whose relevance passes on unchanged (Zennit's ``Activation`` types)
ACTIVATIONS: tuple[type, ...] = (
    nn.ELU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardtanh, nn.Hardswish, nn.LeakyReLU, nn.LogSigmoid,
    nn.PReLU, nn.ReLU, nn.ReLU6, nn.RReLU, nn.SELU, nn.CELU, nn.GELU, nn.Sigmoid, nn.SiLU,
    nn.Softplus, nn.Softshrink, nn.Softsign, nn.Tanh, nn.Tanhshrink, nn.Threshold,
)
BATCHNORMS: tuple[type, ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
AVGPOOLS: tuple[type, ...] = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
                              nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
#: leaf types left to their ordinary gradient: max-pooling (winner takes all), and
#: layers that are the identity or a reshape in eval mode
GRADIENT: tuple[type, ...] = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
                              nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Dropout, nn.Dropout1d,
                              nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten,
                              nn.Unflatten)

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_plus")
TRANSFORMER_COMPOSITES = ("attnlrp", "cp_lrp")
#: leaf types whose computation the transformer composites reach as functional calls
#: (``F.layer_norm``, ``F.rms_norm``, ``softmax``, timm's ``x * gamma``)
TRANSFORMER_LEAVES: tuple[type, ...] = (nn.LayerNorm, nn.RMSNorm, nn.Softmax)
TRANSFORMER_LEAF_NAMES = ("LayerScale",)  # timm's
#: elementwise activation modules of Hugging Face transformers (``transformers.activations``,
#: BLOOM's ``BloomGelu``), which pass relevance on (the identity rule) under the transformer
#: composites, as ``ACTIVATIONS`` do
ACTIVATION_NAMES = ("GELUTanh", "NewGELUActivation", "GELUActivation", "SiLUActivation",
                    "FastGELUActivation", "QuickGELUActivation", "ClippedGELUActivation",
                    "AccurateGELUActivation", "MishActivation", "LinearActivation",
                    "LaplaceActivation", "ReLUSquaredActivation", "PytorchGELUTanh",
                    "SqrtSoftplusActivation", "XIELUActivation", "BloomGelu")


class LRPRuleError(AttribkitError, TypeError):
    """A module of the model has no LRP rule (or needs a canonizer that is switched off)."""


def make_rules(composite: str, *, epsilon: float = 1e-6, gamma: float = 0.25, alpha: float = 2.0,
               beta: float = 1.0, low: Any = None, high: Any = None,
               stabilizer: float = 1e-6) -> Rules:
    """The rules of ``composite`` (see the module docstring) with these parameters."""
    if composite not in COMPOSITES + TRANSFORMER_COMPOSITES:
        raise InvalidOptionError(f"unknown LRP composite {composite!r}; expected one of "
                                 f"{', '.join(COMPOSITES + TRANSFORMER_COMPOSITES)}")
    for name, value in (("epsilon", epsilon), ("stabilizer", stabilizer), ("gamma", gamma)):
        if value < 0:
            raise InvalidOptionError(f"LRP option {name} must be >= 0, got {value!r}")
    linear = Epsilon(epsilon)
    if composite in TRANSFORMER_COMPOSITES:
        return Rules(conv=linear, linear=linear, stabilizer=stabilizer, attention=composite)
    if composite == "epsilon_plus_flat":
        return Rules(conv=ZPlus(stabilizer), linear=linear, first=Flat(stabilizer),
                     first_types=AFFINE, stabilizer=stabilizer)
    if composite == "epsilon_gamma_box":
        return Rules(conv=Gamma(gamma, stabilizer), linear=linear,
                     first=ZBox(low, high, stabilizer), first_types=CONVOLUTIONS,
                     stabilizer=stabilizer)
    if composite == "epsilon_alpha2_beta1":
        try:
            rule = AlphaBeta(alpha, beta, stabilizer)
        except ValueError as exc:
            raise InvalidOptionError(str(exc)) from None
        return Rules(conv=rule, linear=linear, stabilizer=stabilizer)
    return Rules(conv=ZPlus(stabilizer), linear=linear, stabilizer=stabilizer)


def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` has attention modules (``nn.MultiheadAttention``, timm's
    ``Attention``, any module whose class name ends in ``Attention``): ``lrp`` then
    defaults to ``attnlrp``."""
    return any(isinstance(m, nn.MultiheadAttention) or hasattr(m, "fused_attn")
               or type(m).__name__.endswith("Attention") for m in model.modules())


def transformer_leaf(module: nn.Module) -> bool:
    """Whether a transformer composite covers ``module`` through its functional calls."""
    return isinstance(module, TRANSFORMER_LEAVES) or type(module).__name__ in TRANSFORMER_LEAF_NAMES


def first_layer(model: nn.Module, rules: Rules) -> nn.Module | None:
    """The module that gets ``rules.first``: the first of ``rules.first_types`` in module order."""
    if rules.first is None:
        return None
    return next((m for m in model.modules() if isinstance(m, rules.first_types)), None)


def no_rule_error(name: str, module: nn.Module, rules: Rules | None = None) -> LRPRuleError:
    """The error for a leaf module that no rule covers."""
    label = f"{name!r}" if name else "the model itself"
    if rules is not None and rules.attention:
        covered = ("Conv1d/2d/3d and Linear, activations (also Hugging Face's), BatchNorm, "
                   "average pooling, LayerNorm, "
                   "RMSNorm, Softmax, timm's LayerScale and the attention computed by "
                   "F.scaled_dot_product_attention or nn.MultiheadAttention")
    else:
        covered = ("Conv1d/2d/3d and Linear, activations, BatchNorm, average pooling and (with "
                   "canonize=True) torchvision ResNet blocks (transformers: composite='attnlrp' "
                   "or 'cp_lrp')")
    return LRPRuleError(
        f"LRP has no rule for module {label} of type {type(module).__name__}; rules cover "
        f"{covered}; max-pooling, dropout, Identity and Flatten use their gradient")
