"""attribkit-example: the template plugin.

The entry point ``example = "attribkit_example"`` (group ``attribkit``) makes
attribkit register this module; its ``register_methods`` hook describes the
methods. The kernels live in :mod:`attribkit_example.kernels` (a PyTorch layer
method) and :mod:`attribkit_example.rise` (a black-box method) and are imported
only when a method is first used, so listing methods never imports torch.
"""

from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="example.rise",
        family="perturbation",
        factory="attribkit_example.rise:rise",
        needs=("forward",),
        output="pixel",
        sign="non-negative",
        options={"n_masks": 1000, "grid": 8, "p_keep": 0.5, "seed": 0, "probabilities": True,
                 "baseline": 0.0},
        reference="Petsiuk, Das & Saenko 2018, RISE: Randomized Input Sampling for Explanation "
                  "of Black-box Models",
        description="score-weighted sum of random smooth masks; any predict callable (ONNX too)",
    ))
    register(MethodSpec(
        name="example.activation_map",
        aliases=("activation_map",),
        family="other",
        factory="attribkit_example.kernels:activation_map",
        needs=("module", "layer"),
        output="layer",
        sign="signed",
        options={"reduce": "mean"},
        reference="Zhou et al. 2016, Learning Deep Features for Discriminative Localization "
                  "(the unweighted activation map CAM starts from)",
        description="a layer's activations averaged (or maxed) over channels",
    ))
