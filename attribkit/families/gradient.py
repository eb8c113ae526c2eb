"""Built-in plugin: the gradient family."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import family_specs

KERNELS = "attribkit.torch.gradients"
TEXT = "attribkit.text.gradients"
FRAMEWORK = "attribkit.backends.kernels"  # JAX/Flax, Keras 3: docs/frameworks.md


_gradient = family_specs("gradient", KERNELS, needs=("autograd",), output="pixel", sign="signed",
                         options={"abs": False, "take_max": False})
ABS = {"sign": "non-negative", "options": {"abs": True, "take_max": False}}
NOISE = {"n_samples": 25, "stdev": 0.15, "seed": None}
IG = {"n_steps": 50, "integration_method": "gausslegendre", "baseline": None, "internal_batch_size": None}


@hookimpl
def register_methods(register):
    register(_gradient(
        "saliency", aliases=("vanilla_gradient", "gradient"), **ABS, text=f"{TEXT}:saliency",
        framework=f"{FRAMEWORK}:saliency",
        text_options={},
        reference="Simonyan et al. 2014, Deep Inside Convolutional Networks, arXiv:1312.6034",
        description="gradient of the target score w.r.t. the input"))
    register(_gradient(
        "guided_backprop", aliases=("guided_backpropagation", "guided_bp"),
        reference="Springenberg et al. 2015, Striving for Simplicity, arXiv:1412.6806",
        description="gradient with negative signals stopped at every ReLU (module or functional)"))
    register(_gradient(
        "deconvnet", aliases=("deconvolution", "deconv"),
        reference="Zeiler & Fergus 2014, Visualizing and Understanding CNNs, arXiv:1311.2901",
        description="gradient passed through every ReLU by its own sign only"))
    register(_gradient(
        "input_x_gradient", aliases=("inputxgradient", "gradient_x_input"),
        text=f"{TEXT}:input_x_gradient", framework=f"{FRAMEWORK}:input_x_gradient",
        reference="Shrikumar et al. 2016, Not Just a Black Box, arXiv:1605.01713",
        description="input times gradient"))
    register(_gradient(
        "integrated_gradients", aliases=("ig",), module="attribkit.torch.integrated",
        options={**IG, "abs": False, "take_max": False},
        text="attribkit.text.integrated:integrated_gradients", text_options=IG,
        framework=f"{FRAMEWORK}:integrated_gradients",
        reference="Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks, arXiv:1703.01365",
        description="input minus baseline times the gradient integrated along the straight path"))
    register(_gradient(
        "smoothgrad", aliases=("smooth_grad",), module="attribkit.torch.noise", sign="non-negative",
        options={"abs": True, "take_max": False, **NOISE},
        text=f"{TEXT}:smoothgrad", text_options={"abs": True, **NOISE, "internal_batch_size": None},
        framework=f"{FRAMEWORK}:smoothgrad",
        reference="Smilkov et al. 2017, SmoothGrad: removing noise by adding noise, arXiv:1706.03825",
        description="saliency averaged over noisy copies (any method: explain(noise_tunnel=...))"))
