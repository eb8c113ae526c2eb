"""Grad-CAM, LayerCAM and HiResCAM on transformers equal pytorch-grad-cam given its
documented ``reshape_transform`` on the same layer.

pytorch-grad-cam (1.5.x) reads a ViT block's tokens with
``pytorch_grad_cam.utils.reshape_transforms.vit_reshape_transform`` (drop the class
token, reshape the patches to the grid, channels first) and a channel-last
``(B, h, w, C)`` Swin stage with a permute to ``(B, C, h, w)``; attribkit reads the
layout from the model instead (``attribkit.torch.layout``). Both are post-processed
as pytorch-grad-cam does (``tests/test_cam_peers.like_pgc``: min-max, bilinear
resize, min-max) and compared in the same run.
"""

import functools

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.bench.peers import LIBRARIES, peer
from tests.test_cam_peers import like_pgc
from tests.test_vit_models import (timm_deit_distilled, timm_swin, timm_vit, torchvision_swin,
                                   torchvision_vit, vit_images)

pytest.importorskip(LIBRARIES["pytorch-grad-cam"])
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform  # noqa: E402

METHODS = ["gradcam", "layercam", "hirescam"]
TARGETS = [0, 2, 4]


def channel_last_transform(tensor):
    """A channel-last ``(B, h, w, C)`` stage to ``(B, C, h, w)``."""
    return tensor.permute(0, 3, 1, 2)


# model, layer (the one attribkit picks by itself, checked below), input size, pgc transform
CASES = {
    "timm_vit": (timm_vit, "blocks.2.norm1", 32,
                 functools.partial(vit_reshape_transform, height=4, width=4)),
    "torchvision_vit": (torchvision_vit, "encoder.layers.encoder_layer_2.ln_1", 32,
                        functools.partial(vit_reshape_transform, height=4, width=4)),
    "timm_swin": (timm_swin, "layers.1", 64, channel_last_transform),
    "torchvision_swin": (torchvision_swin, "features.3", 64, channel_last_transform),
}


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def pgc_with_transform(method, model, layer, x, targets, transform):
    """pytorch-grad-cam's class for ``method`` from the peer table, given the
    ``reshape_transform`` (a constructor argument, hence not through ``Peer.call``)."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = peer(method, "pytorch-grad-cam").load()
    with cls(model=model, target_layers=[layer], reshape_transform=transform) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    build, layer, size, transform = CASES[request.param]
    return request.param, build(), layer, vit_images(3, size), transform


@pytest.mark.parametrize("method", METHODS)
def test_equals_pytorch_grad_cam_with_its_reshape_transform(case, method):
    name, model, layer, x, transform = case
    ours = ak.explain(model, x, TARGETS, method=method, layer=layer)
    theirs = pgc_with_transform(method, model, dict(model.named_modules())[layer], x, TARGETS, transform)
    mine = like_pgc(ours)
    assert mine.shape == theirs.shape
    assert correlation(mine, theirs) > 0.999, name
    np.testing.assert_allclose(mine, theirs, atol=1e-3)  # float32 sums in another order


def test_the_default_layers_are_the_documented_ones():
    """ViTs: the last block's norm1; Swin: a channel-last last stage read as such."""
    assert ak.explain(timm_vit(), vit_images(1), method="gradcam").layer == "blocks.2.norm1"
    assert ak.explain(torchvision_vit(), vit_images(1), method="gradcam").layer == \
        "encoder.layers.encoder_layer_2.ln_1"
    assert ak.explain(timm_deit_distilled(), vit_images(1), method="gradcam").layer == "blocks.2.norm1"


def test_auto_swin_layers_agree_with_the_last_stage():
    """The automatic choice on Swin (timm: the final channel-last norm; torchvision: its
    channels-first permute after the norm) is the same map as that norm read channel-last."""
    x = vit_images(2, 64)
    for model, norm in ((timm_swin(), "norm"), (torchvision_swin(), "norm")):
        auto = ak.explain(model, x, method="gradcam")
        explicit = ak.explain(model, x, method="gradcam", layer=norm)
        torch.testing.assert_close(auto.values, explicit.values, rtol=1e-4, atol=1e-6)
