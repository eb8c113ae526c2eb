"""The one table of peers: attribkit's method -> the same method in Captum,
pytorch-grad-cam, TorchCAM and Zennit (LRP, also per bench variant such as
``lrp.epsilon_gamma_box``).

The benchmarks time each peer beside ours (:func:`peer_calls`); the tests use
them as independent references (:func:`peer`, :meth:`Peer.call`). An entry's
``options`` are the peer's own arguments that make it compute attribkit's
method with its default options (Captum's ``LayerGradCam`` with
``relu_attributions=True``, for example). No peer library is imported until a
peer is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any

LIBRARIES = {"captum": "captum.attr", "pytorch-grad-cam": "pytorch_grad_cam",
             "torchcam": "torchcam.methods", "zennit": "zennit.composites"}

PeerCall = Callable[..., Any]  # call(model, inputs, targets, layer) -> the peer's result


@dataclasses.dataclass(frozen=True)
class Peer:
    """attribkit's ``method`` as class ``name`` of peer ``library`` (a key of :data:`LIBRARIES`).

    ``takes_layer``: the class is built with the layer (Captum's pixel methods are
    not). ``no_grad``: the peer runs without autograd (TorchCAM's forward-only
    methods). ``needs``: peer arguments the table cannot fix, which every call
    must give (Captum's occlusion window); :func:`peer_calls` leaves such a peer out.
    """

    method: str
    library: str
    name: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    takes_layer: bool = True
    no_grad: bool = False
    needs: tuple[str, ...] = ()

    @property
    def installed(self) -> bool:
        """Whether the peer library can be imported."""
        return importlib.util.find_spec(LIBRARIES[self.library].partition(".")[0]) is not None

    def load(self) -> type:
        """The peer's class (imports the library)."""
        return getattr(importlib.import_module(LIBRARIES[self.library]), self.name)

    def call(self, model: Any, inputs: Any, targets: Sequence[int], layer: Any = None, *,
             cls: type | None = None, **options: Any) -> Any:
        """The peer's result on ``inputs`` for class ``targets`` (one per image) at
        ``layer`` (a module). ``options`` are the peer's own arguments, over the
        entry's; ``cls`` replaces the peer's class (a subclass of it)."""
        classes = targets.tolist() if hasattr(targets, "tolist") else [int(t) for t in targets]
        run = _RUNNERS[self.library]
        return run(self, cls or self.load(), model, inputs, classes, layer, {**self.options, **options})


def _captum(peer: Peer, cls: type, model, inputs, targets, layer, options):
    """``cls(model[, layer]).attribute(inputs, target=targets, **options)``."""
    explainer = cls(model, layer) if peer.takes_layer else cls(model)
    return explainer.attribute(inputs, target=targets, **options)


_PGC_CALL_OPTIONS = ("aug_smooth", "eigen_smooth")


def _pytorch_grad_cam(peer: Peer, cls: type, model, inputs, targets, layer, options):
    """``aug_smooth`` and ``eigen_smooth`` go to the call; other options are set on
    the CAM object, as pytorch-grad-cam's examples set ``cam.batch_size``."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with cls(model=model, target_layers=[layer]) as cam:
        for key, value in options.items():
            if key not in _PGC_CALL_OPTIONS:
                setattr(cam, key, value)
        return cam(input_tensor=inputs, targets=[ClassifierOutputTarget(t) for t in targets],
                   **{k: v for k, v in options.items() if k in _PGC_CALL_OPTIONS})


def _torchcam(peer: Peer, cls: type, model, inputs, targets, layer, options):
    """``options`` go to the extractor; its hooks are removed after the call."""
    import torch

    extractor = cls(model, target_layer=layer, **options)
    try:
        with torch.set_grad_enabled(not peer.no_grad):
            return extractor(targets, model(inputs))
    finally:
        extractor.remove_hooks()


def zennit_canonizers(model) -> list:
    """Zennit's canonizers for ``model``: ``ResNetCanonizer`` for a torchvision ResNet,
    ``VGGCanonizer`` for a VGG, ``SequentialMergeBatchNorm`` for anything else
    (attribkit's ``canonize=True`` does the same)."""
    from torchvision.models import VGG, ResNet
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if isinstance(model, ResNet):
        return [ResNetCanonizer()]
    if isinstance(model, VGG):
        return [VGGCanonizer()]
    return [SequentialMergeBatchNorm()]


def _zennit(peer: Peer, cls: type, model, inputs, targets, layer, options):
    """Zennit's ``Gradient`` attributor with composite ``cls`` and :func:`zennit_canonizers`,
    the output relevance being the target logit (attribkit's convention). The box bounds
    of ``EpsilonGammaBox`` default to each image's minimum and maximum, as attribkit's."""
    import torch
    from zennit.attribution import Gradient

    options = dict(options)
    if peer.name == "EpsilonGammaBox":
        dims = tuple(range(1, inputs.ndim))
        options.setdefault("low", inputs.detach().amin(dim=dims, keepdim=True))
        options.setdefault("high", inputs.detach().amax(dim=dims, keepdim=True))
    composite = cls(canonizers=zennit_canonizers(model), **options)
    index = torch.as_tensor(targets, device=inputs.device)[:, None]

    def output_relevance(scores):
        return torch.zeros_like(scores).scatter_(1, index, scores.detach().gather(1, index))

    with Gradient(model, composite) as attributor:
        return attributor(inputs.detach(), output_relevance)[1]


_RUNNERS = {"captum": _captum, "pytorch-grad-cam": _pytorch_grad_cam, "torchcam": _torchcam,
            "zennit": _zennit}

_NO_SMOOTHING = {"aug_smooth": False, "eigen_smooth": False}

PEERS = (
    Peer("saliency", "captum", "Saliency", {"abs": True}, takes_layer=False),
    Peer("guided_backprop", "captum", "GuidedBackprop", takes_layer=False),
    Peer("deconvnet", "captum", "Deconvolution", takes_layer=False),
    Peer("input_x_gradient", "captum", "InputXGradient", takes_layer=False),
    Peer("gradcam", "captum", "LayerGradCam", {"relu_attributions": True}),
    Peer("guided_gradcam", "captum", "GuidedGradCam", {"interpolate_mode": "bilinear"}),
    Peer("occlusion", "captum", "Occlusion", takes_layer=False,
         needs=("sliding_window_shapes", "strides")),
    *(Peer(method, "pytorch-grad-cam", name, _NO_SMOOTHING) for method, name in (
        ("gradcam", "GradCAM"), ("gradcam_pp", "GradCAMPlusPlus"), ("hirescam", "HiResCAM"),
        ("xgradcam", "XGradCAM"), ("layercam", "LayerCAM"), ("eigencam", "EigenCAM"),
        ("scorecam", "ScoreCAM"), ("ablationcam", "AblationCAM"))),
    *(Peer(method, "torchcam", name, no_grad=method in ("cam", "scorecam")) for method, name in (
        ("cam", "CAM"), ("gradcam", "GradCAM"), ("gradcam_pp", "GradCAMpp"),
        ("xgradcam", "XGradCAM"), ("layercam", "LayerCAM"), ("scorecam", "ScoreCAM"))),
    *(Peer(method, "zennit", name, takes_layer=False) for method, name in (
        ("lrp", "EpsilonPlusFlat"), ("lrp.epsilon_gamma_box", "EpsilonGammaBox"),
        ("lrp.epsilon_alpha2_beta1", "EpsilonAlpha2Beta1"), ("lrp.epsilon_plus", "EpsilonPlus"))),
)


def peer(method: str, library: str) -> Peer:
    """The entry of ``method`` in ``library``; ``KeyError`` when the table has none."""
    for entry in PEERS:
        if entry.method == method and entry.library == library:
            return entry
    raise KeyError(f"{library} has no peer of {method!r} in attribkit.bench.peers")


def peer_calls(method: str) -> dict[str, PeerCall]:
    """``call(model, inputs, targets, layer)`` of every installed peer of ``method``
    that runs with the table's options, by library."""
    return {p.library: p.call for p in PEERS if p.method == method and p.installed and not p.needs}
