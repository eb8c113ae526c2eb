"""Built-in plugin: the gradient family."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec

KERNELS = "attribkit.torch.gradients"


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="saliency",
        aliases=("vanilla_gradient", "gradient"),
        family="gradient",
        factory=f"{KERNELS}:saliency",
        needs=("autograd",),
        output="pixel",
        sign="non-negative",
        options={"abs": True, "take_max": False},
        reference="Simonyan et al. 2014, Deep Inside Convolutional Networks, arXiv:1312.6034",
        description="gradient of the target score w.r.t. the input",
    ))
