"""Built-in plugin: layer-wise relevance propagation (rules, composites, canonizers).

Kernels in :mod:`attribkit.torch.lrp`; rules, composites and canonizers in ``docs/lrp.md``.
"""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec

OPTIONS = {
    "composite": "auto",
    "canonize": True,
    "epsilon": 1e-6,
    "gamma": 0.25,
    "alpha": 2.0,
    "beta": 1.0,
    "low": None,
    "high": None,
    "stabilizer": 1e-6,
}

SPEC = MethodSpec(
    name="lrp",
    aliases=("layerwise_relevance_propagation", "layer_wise_relevance_propagation"),
    family="lrp",
    factory="attribkit.torch.lrp.kernel:lrp",
    needs=("autograd", "module"),
    output="pixel",
    sign="signed",
    options=OPTIONS,
    text="attribkit.text.lrp:lrp",
    text_options={"composite": "attnlrp", "epsilon": 1e-6, "stabilizer": 1e-6},
    reference="Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions "
              "by Layer-Wise Relevance Propagation, PLoS ONE 10(7):e0130140; composites as in "
              "Zennit (Anders et al. 2021, arXiv:2106.13200)",
    description="LRP with a composite of rules (auto: attnlrp on transformers, else epsilon_plus_flat; "
                "epsilon_gamma_box, epsilon_alpha2_beta1, epsilon_plus, cp_lrp), canonizers for BatchNorm "
                "and ResNets",
)


@hookimpl
def register_methods(register):
    """Register this family's methods."""
    register(SPEC)
