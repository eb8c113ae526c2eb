"""The static table of Captum attribution classes: what is registered, and what is not (and why).

This module imports neither torch nor Captum, so ``attribkit methods`` can list
every Captum method without paying for either. The table was written against
Captum's exports (``captum.attr.__all__``) and is checked against the installed
Captum in two places: the plugin's test suite (a class in Captum's exports that
is in neither :data:`SUPPORTED` nor :data:`UNSUPPORTED` fails the test), and
at run time, when the first Captum method is loaded
(:func:`attribkit_captum.exports.check_coverage` warns about new classes).

Option names follow Captum's ``attribute()`` / constructor arguments, except
``integration_method`` (Captum's ``method``, a name ``explain`` already uses).
Adapter options that Captum does not have: ``seed`` (stochastic methods),
``grid`` (the default feature mask), ``group`` (the default layer mask).
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: The Captum version this table was last compared with.
VERIFIED_WITH = "0.9.0"

#: Options that go to the Captum class's constructor rather than to ``attribute()``.
INIT_OPTIONS = ("multiply_by_inputs", "eps", "interpretable_model", "similarity_func",
                "perturb_func")


# permute features across the images of the batch: one image's map depends on the others
BATCH_COUPLED = frozenset({"FeaturePermutation", "LayerFeaturePermutation"})


@dataclasses.dataclass(frozen=True)
class Entry:
    """One Captum class as attribkit registers it (``name`` is prefixed ``captum.``).

    ``layer``: the constructor takes a layer (attribkit resolves it, auto-pick included).
    ``model``: Captum needs the ``nn.Module`` itself (it hooks its submodules),
    not just a forward callable. ``target``: ``attribute()`` takes a target.
    ``per_image``: the adapter calls Captum once per image (stochastic methods
    re-seeded per image, and per-image baseline distributions for the SHAP
    methods), so an image's map does not depend on the rest of the batch.
    ``image``: inputs must be ``(B, C, H, W)`` (default masks and windows are 2-D).
    ``text``: the options of the method's text kernel (:mod:`attribkit_captum.text`),
    ``None`` when it has none.
    """

    cls: str
    name: str
    family: str
    needs: tuple[str, ...]
    output: str
    sign: str
    options: dict[str, Any]
    reference: str
    description: str
    aliases: tuple[str, ...] = ()
    layer: bool = False
    model: bool = False
    target: bool = True
    per_image: bool = False
    image: bool = False
    text: dict[str, Any] | None = None

    @property
    def method_name(self) -> str:
        return f"captum.{self.name}"


_IG = {"baselines": None, "n_steps": 50, "integration_method": "gausslegendre",
       "internal_batch_size": None}
_MASK = {"baselines": None, "feature_mask": None, "grid": 8, "perturbations_per_eval": None}
_TO_INPUT = {"attribute_to_layer_input": False}
# text kernels (attribkit_captum.text): a baseline token id (None: the padding id)
_TEXT_PERTURB = {"baseline": None, "perturbations_per_eval": None}
_TEXT_SAMPLED = {**_TEXT_PERTURB, "n_samples": 25, "seed": 0}

SUPPORTED: tuple[Entry, ...] = (
    # ---- primary attribution: maps with the input's shape --------------------------------
    Entry("IntegratedGradients", "integrated_gradients", "gradient", ("autograd",), "pixel",
          "signed", {**_IG, "multiply_by_inputs": True},
          "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks, arXiv:1703.01365",
          "path integral of gradients from a baseline (zeros) to the input",
          aliases=("integrated_gradients", "ig"),
          text={"baseline": None, "n_steps": 50, "integration_method": "gausslegendre",
                "internal_batch_size": None}),
    Entry("Saliency", "saliency", "gradient", ("autograd",), "pixel", "non-negative",
          {"abs": True},
          "Simonyan et al. 2014, Deep Inside Convolutional Networks, arXiv:1312.6034",
          "Captum's gradient magnitude (abs=False: the signed gradient)", text={"abs": True}),
    Entry("InputXGradient", "input_x_gradient", "gradient", ("autograd",), "pixel", "signed",
          {}, "Shrikumar et al. 2016, Not Just a Black Box, arXiv:1605.01713",
          "Captum's input times gradient", text={}),
    Entry("DeepLift", "deeplift", "gradient", ("autograd", "module"), "pixel", "signed",
          {"baselines": None, "multiply_by_inputs": True, "eps": 1e-10},
          "Shrikumar et al. 2017, Learning Important Features Through Propagating Activation "
          "Differences, arXiv:1704.02685",
          "DeepLift (Rescale rule) against a baseline (zeros)",
          aliases=("deeplift", "deep_lift"), model=True),
    Entry("DeepLiftShap", "deeplift_shap", "gradient", ("autograd", "module"), "pixel", "signed",
          {"baselines": None, "multiply_by_inputs": True},
          "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions, "
          "arXiv:1705.07874",
          "DeepLift averaged over a baseline distribution (zeros and a blurred copy)",
          aliases=("deeplift_shap", "deep_lift_shap"), model=True, per_image=True),
    Entry("GradientShap", "gradient_shap", "gradient", ("autograd",), "pixel", "signed",
          {"baselines": None, "n_samples": 5, "stdevs": 0.0, "multiply_by_inputs": True,
           "seed": 0},
          "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions, "
          "arXiv:1705.07874",
          "expected gradients on random points between the input and random baselines",
          aliases=("gradient_shap", "gradshap"), per_image=True),
    Entry("GuidedBackprop", "guided_backprop", "gradient", ("autograd", "module"), "pixel",
          "signed", {},
          "Springenberg et al. 2015, Striving for Simplicity, arXiv:1412.6806",
          "Captum's guided backprop (ReLU modules only)", model=True),
    Entry("Deconvolution", "deconvolution", "gradient", ("autograd", "module"), "pixel",
          "signed", {},
          "Zeiler & Fergus 2014, Visualizing and Understanding CNNs, arXiv:1311.2901",
          "Captum's deconvnet (ReLU modules only)", model=True),
    Entry("GuidedGradCam", "guided_gradcam", "cam", ("autograd", "module", "layer"), "pixel",
          "signed", {"interpolate_mode": "nearest", **_TO_INPUT},
          "Selvaraju et al. 2017, Grad-CAM, arXiv:1610.02391",
          "guided backprop times the upsampled Grad-CAM of a layer", layer=True, model=True),
    Entry("LRP", "lrp", "gradient", ("autograd", "module"), "pixel", "signed", {},
          "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions "
          "by Layer-Wise Relevance Propagation, PLoS ONE 10(7):e0130140",
          "layer-wise relevance propagation with Captum's default rules (module.rule overrides)",
          model=True),
    Entry("FeatureAblation", "feature_ablation", "perturbation", ("forward",), "pixel", "signed",
          dict(_MASK),
          "Captum FeatureAblation (occlusion by feature groups; Zeiler & Fergus 2014)",
          "score drop when each grid cell is replaced by the baseline",
          aliases=("feature_ablation",), image=True, text=dict(_TEXT_PERTURB)),
    Entry("FeaturePermutation", "feature_permutation", "perturbation", ("forward",), "pixel",
          "signed", {"feature_mask": None, "grid": 8, "perturbations_per_eval": None, "seed": 0},
          "Fisher et al. 2019, All Models are Wrong, but Many are Useful, arXiv:1801.01489",
          "score change when a grid cell is swapped with other images' (needs >= 2 images "
          "per chunk)",
          aliases=("feature_permutation",), image=True),
    Entry("Occlusion", "occlusion", "perturbation", ("forward",), "pixel", "signed",
          {"sliding_window_shapes": None, "strides": None, "baselines": None,
           "perturbations_per_eval": None},
          "Zeiler & Fergus 2014, Visualizing and Understanding CNNs, arXiv:1311.2901",
          "score drop under a sliding occluding patch (window ~1/8 of the image)",
          image=True,  # "occlusion" is the built-in method
          text={**_TEXT_PERTURB, "sliding_window_shapes": 1, "strides": None}),
    Entry("ShapleyValueSampling", "shapley_value_sampling", "perturbation", ("forward",),
          "pixel", "signed", {**_MASK, "n_samples": 25, "seed": 0},
          "Castro et al. 2009, Polynomial calculation of the Shapley value based on sampling, "
          "Computers & OR 36(5)",
          "Shapley values of grid cells from sampled feature orderings",
          aliases=("shapley_value_sampling", "shapley_sampling"), image=True,
          text=dict(_TEXT_SAMPLED)),
    Entry("ShapleyValues", "shapley_values", "perturbation", ("forward",), "pixel", "signed",
          {**_MASK, "grid": 2},
          "Shapley 1953, A Value for n-Person Games",
          "exact Shapley values of grid cells (all orderings: keep grid small)",
          aliases=("shapley_values",), image=True, text=dict(_TEXT_PERTURB)),
    Entry("KernelShap", "kernel_shap", "perturbation", ("forward",), "pixel", "signed",
          {**_MASK, "n_samples": 25, "seed": 0},
          "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions, "
          "arXiv:1705.07874",
          "Kernel SHAP: weighted linear fit on random grid-cell coalitions",
          aliases=("kernel_shap", "kernelshap"), per_image=True, image=True,
          text=dict(_TEXT_SAMPLED)),
    Entry("Lime", "lime", "perturbation", ("forward",), "pixel", "signed",
          {**_MASK, "n_samples": 25, "seed": 0, "interpretable_model": None,
           "similarity_func": None, "perturb_func": None},
          "Ribeiro et al. 2016, \"Why Should I Trust You?\", arXiv:1602.04938",
          "LIME: sparse linear surrogate on random grid-cell masks (needs scikit-learn)",
          aliases=("lime",), per_image=True, image=True,
          text={**_TEXT_SAMPLED, "interpretable_model": None, "similarity_func": None}),
    # ---- layer attribution: maps at a layer's resolution ---------------------------------
    Entry("LayerGradCam", "layer_gradcam", "cam", ("autograd", "layer"), "layer", "signed",
          {"relu_attributions": False, "attr_dim_summation": True, **_TO_INPUT},
          "Selvaraju et al. 2017, Grad-CAM, arXiv:1610.02391",
          "Captum's Grad-CAM (no ReLU unless relu_attributions=True)",
          aliases=("layer_gradcam",), layer=True),
    Entry("LayerConductance", "layer_conductance", "gradient", ("autograd", "layer"), "layer",
          "signed", {**_IG, **_TO_INPUT},
          "Dhamdhere et al. 2018, How Important Is a Neuron?, arXiv:1805.12233",
          "conductance of each neuron of a layer",
          aliases=("layer_conductance", "conductance"), layer=True),
    Entry("LayerIntegratedGradients", "layer_integrated_gradients", "gradient",
          ("autograd", "layer"), "layer", "signed",
          {**_IG, "multiply_by_inputs": True, **_TO_INPUT},
          "Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks, arXiv:1703.01365",
          "integrated gradients with respect to a layer's activations",
          aliases=("layer_integrated_gradients", "layer_ig"), layer=True),
    Entry("LayerGradientXActivation", "layer_gradient_x_activation", "gradient",
          ("autograd", "layer"), "layer", "signed", {"multiply_by_inputs": True, **_TO_INPUT},
          "Shrikumar et al. 2016, Not Just a Black Box, arXiv:1605.01713",
          "a layer's activations times their gradients",
          aliases=("layer_gradient_x_activation",), layer=True),
    Entry("LayerDeepLift", "layer_deeplift", "gradient", ("autograd", "module", "layer"),
          "layer", "signed", {"baselines": None, "multiply_by_inputs": True, **_TO_INPUT},
          "Shrikumar et al. 2017, Learning Important Features Through Propagating Activation "
          "Differences, arXiv:1704.02685",
          "DeepLift attributions of a layer's activations",
          aliases=("layer_deeplift", "layer_deep_lift"), layer=True, model=True),
    Entry("LayerDeepLiftShap", "layer_deeplift_shap", "gradient",
          ("autograd", "module", "layer"), "layer", "signed",
          {"baselines": None, "multiply_by_inputs": True, **_TO_INPUT},
          "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions, "
          "arXiv:1705.07874",
          "DeepLiftShap of a layer's activations (baselines: zeros and a blurred copy)",
          aliases=("layer_deeplift_shap", "layer_deep_lift_shap"), layer=True, model=True,
          per_image=True),
    Entry("LayerGradientShap", "layer_gradient_shap", "gradient", ("autograd", "layer"),
          "layer", "signed",
          {"baselines": None, "n_samples": 5, "stdevs": 0.0, "multiply_by_inputs": True,
           **_TO_INPUT, "seed": 0},
          "Lundberg & Lee 2017, A Unified Approach to Interpreting Model Predictions, "
          "arXiv:1705.07874",
          "GradientShap of a layer's activations",
          aliases=("layer_gradient_shap",), layer=True, per_image=True),
    Entry("LayerActivation", "layer_activation", "other", ("module", "layer"), "layer",
          "signed", dict(_TO_INPUT),
          "Captum LayerActivation",
          "a layer's raw activations (B, C, h, w); target only recorded",
          aliases=("layer_activation",), layer=True, target=False),
    Entry("InternalInfluence", "internal_influence", "gradient", ("autograd", "layer"),
          "layer", "signed", {**_IG, **_TO_INPUT},
          "Leino et al. 2018, Influence-Directed Explanations for Deep Convolutional "
          "Networks, arXiv:1802.03788",
          "gradients at a layer integrated along the input path",
          aliases=("internal_influence",), layer=True),
    Entry("LayerLRP", "layer_lrp", "gradient", ("autograd", "module", "layer"), "layer",
          "signed", dict(_TO_INPUT),
          "Bach et al. 2015, Layer-Wise Relevance Propagation, PLoS ONE 10(7):e0130140",
          "LRP relevance of a layer's activations", aliases=("layer_lrp",), layer=True,
          model=True),
    Entry("LayerFeatureAblation", "layer_feature_ablation", "perturbation",
          ("module", "layer"), "layer", "signed",
          {"layer_baselines": None, "layer_mask": None, "group": "position",
           "perturbations_per_eval": None, **_TO_INPUT},
          "Captum LayerFeatureAblation",
          "score drop when a layer position (group='position') or channel is zeroed",
          aliases=("layer_feature_ablation",), layer=True),
    Entry("LayerFeaturePermutation", "layer_feature_permutation", "perturbation",
          ("module", "layer"), "layer", "signed",
          {"layer_mask": None, "group": "position", "perturbations_per_eval": None, "seed": 0},
          "Fisher et al. 2019, All Models are Wrong, but Many are Useful, arXiv:1801.01489",
          "score change when a layer position is swapped with other images' (needs >= 2 "
          "images per chunk)",
          aliases=("layer_feature_permutation",), layer=True),
)

#: Classes in ``captum.attr.__all__`` that subclass ``Attribution`` but are not
#: registered, with the reason (shown by ``attribkit_captum.coverage()`` and docs/captum.md).
UNSUPPORTED: dict[str, str] = {
    "Attribution": "abstract base class",
    "GradientAttribution": "abstract base class",
    "PerturbationAttribution": "abstract base class",
    "LayerAttribution": "abstract base class",
    "NeuronAttribution": "abstract base class",
    "NoiseTunnel": "deliberately not registered: a wrapper around another method; attribkit "
                   "has explain(..., noise_tunnel='smoothgrad'|'smoothgrad_sq'|'vargrad') for "
                   "every method",
    "LimeBase": "needs user-written interpretable-space transforms; Lime and KernelShap are "
                "its ready-made image forms (Lime exposes interpretable_model, "
                "similarity_func and perturb_func)",
    "DataLoaderAttribution": "attributes a whole DataLoader to shared features at once, not "
                             "a map per image",
    "NeuronConductance": "explains an internal neuron (neuron_selector), not a model output, "
                         "so attribkit's target semantics do not apply",
    "NeuronFeatureAblation": "explains an internal neuron (neuron_selector), not a target",
    "NeuronGradient": "explains an internal neuron (neuron_selector), not a target",
    "NeuronIntegratedGradients": "explains an internal neuron (neuron_selector), not a target",
    "NeuronDeepLift": "explains an internal neuron (neuron_selector), not a target",
    "NeuronDeepLiftShap": "explains an internal neuron (neuron_selector), not a target",
    "NeuronGradientShap": "explains an internal neuron (neuron_selector), not a target",
    "NeuronDeconvolution": "explains an internal neuron (neuron_selector), not a target",
    "NeuronGuidedBackprop": "explains an internal neuron (neuron_selector), not a target",
    "LLMAttribution": "text generation: attributes tokens of an InterpretableInput through a "
                      "tokenizer, not image batches",
    "LLMGradientAttribution": "text generation with a tokenizer, not image batches",
    "RemoteLLMAttribution": "text generation against a remote LLM provider, not image batches",
}

BY_CLASS: dict[str, Entry] = {e.cls: e for e in SUPPORTED}
BY_NAME: dict[str, Entry] = {e.method_name: e for e in SUPPORTED}


#: What the plugin's ``register_metrics`` hook registers.
METRICS = {
    "captum.infidelity": {
        "factory": "attribkit_captum.metrics:infidelity_metric",
        "kind": "faithfulness",
        "higher_is_better": False,
        "needs": ("forward",),
        "options": {"n_perturb_samples": 10, "stdev": 0.05, "normalize": False,
                    "max_examples_per_batch": None, "seed": 0},
        "reference": "Yeh et al. 2019, On the (In)fidelity and Sensitivity of Explanations, "
                     "arXiv:1901.09392",
        "description": "squared error between attribution-predicted and actual score changes",
        "forwards": "11 (n_perturb_samples + 1)",
    },
    "captum.sensitivity_max": {
        "factory": "attribkit_captum.metrics:sensitivity_max_metric",
        "kind": "robustness",
        "higher_is_better": False,
        "needs": ("model", "method"),
        "options": {"perturb_radius": 0.02, "n_perturb_samples": 10, "norm_ord": "fro",
                    "max_examples_per_batch": None, "seed": 0},
        "reference": "Yeh et al. 2019, On the (In)fidelity and Sensitivity of Explanations, "
                     "arXiv:1901.09392",
        "description": "largest relative change of the map under small input perturbations",
        "forwards": "10 explanations (n_perturb_samples)",
    },
}
