"""Built-in plugin: the gradient family."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec

KERNELS = "attribkit.torch.gradients"


def _gradient_method(name: str, *, aliases: tuple[str, ...], abs: bool, reference: str,
                     description: str) -> MethodSpec:
    return MethodSpec(
        name=name,
        aliases=aliases,
        family="gradient",
        factory=f"{KERNELS}:{name}",
        needs=("autograd",),
        output="pixel",
        sign="non-negative" if abs else "signed",
        options={"abs": abs, "take_max": False},
        reference=reference,
        description=description,
    )


@hookimpl
def register_methods(register):
    register(_gradient_method(
        "saliency", aliases=("vanilla_gradient", "gradient"), abs=True,
        reference="Simonyan et al. 2014, Deep Inside Convolutional Networks, arXiv:1312.6034",
        description="gradient of the target score w.r.t. the input"))
    register(_gradient_method(
        "guided_backprop", aliases=("guided_backpropagation", "guided_bp"), abs=False,
        reference="Springenberg et al. 2015, Striving for Simplicity, arXiv:1412.6806",
        description="gradient with negative signals stopped at every ReLU (module or functional)"))
    register(_gradient_method(
        "deconvnet", aliases=("deconvolution", "deconv"), abs=False,
        reference="Zeiler & Fergus 2014, Visualizing and Understanding CNNs, arXiv:1311.2901",
        description="gradient passed through every ReLU by its own sign only"))
    register(_gradient_method(
        "input_x_gradient", aliases=("inputxgradient", "gradient_x_input"), abs=False,
        reference="Shrikumar et al. 2016, Not Just a Black Box, arXiv:1605.01713",
        description="input times gradient"))
    register(MethodSpec(
        name="smoothgrad",
        aliases=("smooth_grad",),
        family="gradient",
        factory="attribkit.torch.noise:smoothgrad",
        needs=("autograd",),
        output="pixel",
        sign="non-negative",
        options={"abs": True, "take_max": False, "n_samples": 25, "stdev": 0.15, "seed": None},
        reference="Smilkov et al. 2017, SmoothGrad: removing noise by adding noise, arXiv:1706.03825",
        description="saliency averaged over noisy copies (any method: explain(noise_tunnel=...))",
    ))
