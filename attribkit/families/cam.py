"""Built-in plugin: the CAM family.

Every method explains a layer (``layer=``: a module, a dotted name or ``None``
for the last spatial layer) and returns a ``(B, 1, h, w)`` map at that layer's
resolution (``result.upsampled()`` resizes it to the input), except Guided
Grad-CAM, which returns a pixel map. Channel-last ``(B, h, w, C)`` and token
``(B, N, C)`` outputs (Swin, ConvNeXt, vision transformers) are read in the layout
found in the model (``layout=``, ``prefix_tokens=``, ``grid=`` override it; CAM and
Ablation-CAM take channels-first layers only). The kernels live in
:mod:`attribkit.torch.cam` and are imported only on first use. Formulas:
``docs/cam.md``.
"""

from __future__ import annotations

import dataclasses

from attribkit.hookspecs import hookimpl
from attribkit.registry import family_specs

KERNELS = "attribkit.torch.cam"
# the methods that also run on JAX/Flax and Keras 3 models (attribkit.backends.kernels, docs/frameworks.md)
ON_FRAMEWORKS = ("gradcam", "gradcam_pp", "hirescam", "xgradcam", "layercam", "eigencam")
FORWARD_BATCH_SIZE = 64
# read from the model when None (attribkit.torch.layout); given, they override it
LAYOUT = {"layout": None, "prefix_tokens": None, "grid": None}


_cam = family_specs("cam", KERNELS, output="layer", sign="non-negative", options={"relu": True, **LAYOUT})


SPECS = (
    _cam("cam", aliases=("class_activation_map",), needs=("module", "layer"), options={"relu": True},
         reference="Zhou et al. 2016, Learning Deep Features for Discriminative Localization, "
                   "CVPR, arXiv:1512.04150",
         description="classifier weights of a GAP + linear head times the activations"),
    _cam("gradcam", aliases=("grad_cam",), needs=("autograd", "layer"),
         reference="Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via "
                   "Gradient-based Localization, ICCV, arXiv:1610.02391",
         description="activations weighted by their spatially averaged gradients"),
    _cam("gradcam_pp", aliases=("gradcampp", "grad_cam_plus_plus", "gradcam_plus_plus",
                                "grad_cam_pp"),
         needs=("autograd", "layer"),
         reference="Chattopadhay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual "
                   "Explanations for Deep Convolutional Networks, WACV, arXiv:1710.11063",
         description="Grad-CAM with pixel-wise weighted positive gradients"),
    _cam("hirescam", aliases=("hires_cam",), needs=("autograd", "layer"),
         reference="Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful "
                   "explanations of convolutional neural networks, arXiv:2011.08891",
         description="element-wise gradient times activation, summed over channels"),
    _cam("xgradcam", aliases=("xgrad_cam", "axiom_gradcam"), needs=("autograd", "layer"),
         reference="Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and "
                   "Explanation of CNNs, BMVC, arXiv:2008.02312",
         description="activation-normalised gradient-times-activation channel weights"),
    _cam("layercam", aliases=("layer_cam",), needs=("autograd", "layer"),
         reference="Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps "
                   "for Localization, IEEE TIP 30:5875-5888, doi:10.1109/TIP.2021.3089943",
         description="element-wise positive gradient times activation"),
    _cam("scorecam", aliases=("score_cam",), needs=("module", "layer"),
         options={"forward_batch_size": None, "align_corners": True, "relu": True, **LAYOUT},
         reference="Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for "
                   "Convolutional Neural Networks, CVPR Workshops, arXiv:1910.01279",
         description="softmax of the scores of inputs masked by each activation map"),
    _cam("ablationcam", aliases=("ablation_cam",), needs=("module", "layer"),
         options={"forward_batch_size": FORWARD_BATCH_SIZE, "ablation_value": 0.0, "relu": True},
         reference="Desai & Ramaswamy 2020, Ablation-CAM: Visual Explanations for Deep "
                   "Convolutional Network via Gradient-free Localization, WACV",
         description="relative score drop when each channel is ablated",
         module="attribkit.torch.ablation"),
    _cam("eigencam", aliases=("eigen_cam",), needs=("module", "layer"),
         reference="Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal "
                   "Components, IJCNN, arXiv:2008.00299",
         description="first principal component of the activations (class-agnostic)"),
    _cam("guided_gradcam", aliases=("guided_grad_cam",), needs=("autograd", "module", "layer"),
         options={"interpolate_mode": "bilinear", **LAYOUT}, output="pixel", sign="signed",
         reference="Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via "
                   "Gradient-based Localization, ICCV, arXiv:1610.02391",
         description="guided backpropagation times the upsampled Grad-CAM map"),
)


@hookimpl
def register_methods(register):
    """Register the CAM family (kernels in :mod:`attribkit.torch.cam`)."""
    for spec in SPECS:
        if spec.name in ON_FRAMEWORKS:
            spec = dataclasses.replace(spec, framework=f"attribkit.backends.kernels:{spec.name}")
        register(spec)
