"""Segmentation through ``explain``: ``Region(cls, mask)`` on torchvision FCN, DeepLabV3 and
LRASPP (dict outputs ``{"out": (B, C, H, W)}``) and on a Hugging Face SegFormer (logits at
1/4 of the image).

References: pytorch-grad-cam 1.5.7's ``GradCAM`` with ``SemanticSegmentationTarget`` on the
same layer (it needs a module returning ``model(x)["out"]``; attribkit reads the dict
itself), post-processed as in ``tests/test_cam_peers.py``; saliency against
``torch.autograd.grad`` of the region score written out here.
"""

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attribkit as ak
from attribkit.errors import TargetError

tv_seg = pytest.importorskip("torchvision.models.segmentation")

SIZE = 64
#: model name -> (constructor options, the layer compared with pytorch-grad-cam)
MODELS = {
    "fcn_resnet50": ({"aux_loss": True}, "backbone.layer4"),
    "deeplabv3_mobilenet_v3_large": ({"aux_loss": True}, "backbone.16"),
    "lraspp_mobilenet_v3_large": ({}, "backbone.16"),
}
_built: dict[str, nn.Module] = {}


def segmenter(name):
    """A randomly initialised torchvision segmentation model with 5 classes, eval mode."""
    if name not in _built:
        torch.manual_seed(0)
        options, _ = MODELS[name]
        _built[name] = getattr(tv_seg, name)(num_classes=5, weights=None, weights_backbone=None,
                                             **options).eval()
    return _built[name]


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def mask():
    m = torch.zeros(SIZE, SIZE)
    m[10:40, 20:52] = 1
    return m


def minmax(v):
    v = v - v.amin(dim=(-2, -1), keepdim=True)
    return v / (1e-7 + v.amax(dim=(-2, -1), keepdim=True))


def like_pgc(result):
    """Our layer map post-processed as pytorch-grad-cam does: ``(B, H, W)``."""
    scaled = dataclasses.replace(result, values=minmax(result.values))
    return minmax(scaled.upsampled().clamp(min=0))[:, 0].numpy()


class OutOnly(nn.Module):
    """What pytorch-grad-cam needs: the ``"out"`` logits, not the dict."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def untouched(model, before, training=False):
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training is training
    assert all(p.requires_grad for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("with_mask", [True, False], ids=["mask", "all-pixels"])
def test_gradcam_equals_pytorch_grad_cam_semantic_segmentation_target(name, with_mask, images, mask):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    model, layer = segmenter(name), MODELS[name][1]
    cls = 3
    target = ak.Region(cls, mask) if with_mask else ak.Region(cls)
    ours = ak.explain(model, images, target, method="gradcam", layer=layer)
    assert ours.layer == layer and ours.target.tolist() == [cls, cls]
    peer_mask = (mask if with_mask else torch.ones(SIZE, SIZE)).numpy()
    with GradCAM(model=OutOnly(model), target_layers=[model.get_submodule(layer)]) as cam:
        ref = cam(input_tensor=images, targets=[SemanticSegmentationTarget(cls, peer_mask)] * 2)
    mine = like_pgc(ours)
    corr = np.corrcoef(mine.ravel(), ref.ravel())[0, 1]
    assert corr > 0.999, (name, corr)
    assert np.abs(mine - ref).max() < 1e-3


def test_saliency_equals_autograd_of_the_region_score(images):
    """Per-image classes and per-image masks, the gradient of the written-out score."""
    model = segmenter("lraspp_mobilenet_v3_large")
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[0, :20, :30] = True
    masks[1, 30:, 10:] = True
    classes = [1, 4]
    ours = ak.explain(model, images, ak.Region(classes, masks), method="saliency")

    x = images.clone().requires_grad_(True)
    logits = model(x)["out"]
    score = sum((logits[i, classes[i]] * masks[i]).sum() for i in range(2))
    (grad,) = torch.autograd.grad(score, x)
    torch.testing.assert_close(ours.values, grad.abs(), rtol=1e-4, atol=1e-7)
    assert ours.target.tolist() == classes
    assert isinstance(ours.meta["target"], ak.Region)


def test_a_forward_only_method_reads_the_dict_output(images, mask):
    """Occlusion: the region score of each occluded copy, from the dict output."""
    model = segmenter("lraspp_mobilenet_v3_large")
    ours = ak.explain(model, images[:1], ak.Region(2, mask), method="occlusion", window=32, stride=32)
    with torch.no_grad():
        clean = (model(images[:1])["out"][0, 2] * mask).sum()
        hidden = images[:1].clone()
        hidden[..., :32, :32] = 0
        drop = clean - (model(hidden)["out"][0, 2] * mask).sum()
    assert ours.values.shape[-2:] == (SIZE, SIZE)
    torch.testing.assert_close(ours.values[0, 0, 5, 5], drop, rtol=1e-4, atol=1e-5)


def tiny_segformer():
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
        decoder_hidden_size=16, num_labels=5)
    torch.manual_seed(0)
    return transformers.SegformerForSemanticSegmentation(config).eval()


def test_hugging_face_segformer_with_a_full_size_mask(images, mask):
    """SegFormer's logits are 1/4 of the image; a mask drawn on the image counts the
    class logits upsampled to the image (bilinear, as Hugging Face post-processes)."""
    model = tiny_segformer()
    with torch.no_grad():
        assert model(images).logits.shape[-2:] == (SIZE // 4, SIZE // 4)
    ours = ak.explain(model, images, ak.Region(2, mask), method="saliency")

    x = images.clone().requires_grad_(True)
    full = F.interpolate(model(pixel_values=x).logits, size=(SIZE, SIZE), mode="bilinear",
                         align_corners=False)
    (grad,) = torch.autograd.grad((full[:, 2] * mask).sum(), x)
    torch.testing.assert_close(ours.values, grad.abs(), rtol=1e-4, atol=1e-7)

    small = mask[::4, ::4]  # a mask at the logits' own size is used as it is
    ours_small = ak.explain(model, images, ak.Region(2, small), method="saliency")
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((model(x).logits[:, 2] * small).sum(), x)
    torch.testing.assert_close(ours_small.values, grad.abs(), rtol=1e-4, atol=1e-7)

    cam = ak.explain(model, images, ak.Region(2, mask), method="gradcam")
    assert cam.values.shape[:2] == (2, 1) and bool(cam.values.abs().sum() > 0)


@pytest.mark.parametrize("case, target, message", [
    ("masks for another batch", lambda: ak.Region(1, torch.ones(3, SIZE, SIZE)), "3 masks"),
    ("a 1-D mask", lambda: ak.Region(1, torch.ones(SIZE)), "(H, W) or (B, H, W)"),
    ("a multi-channel mask", lambda: ak.Region(1, torch.ones(2, 3, SIZE, SIZE)), "(H, W) or (B, H, W)"),
    ("another aspect ratio", lambda: ak.Region(1, torch.ones(SIZE, SIZE // 2)), "aspect ratio"),
    ("smaller than the logits", lambda: ak.Region(1, torch.ones(8, 8)), "8x8"),
    ("an empty mask", lambda: ak.Region(1, torch.zeros(SIZE, SIZE)), "empty"),
    ("an empty mask of one image",
     lambda: ak.Region(1, torch.stack([torch.ones(SIZE, SIZE), torch.zeros(SIZE, SIZE)])), "image 1"),
    ("a class out of range", lambda: ak.Region(5), "class 5 is out of range"),
    ("a negative class", lambda: ak.Region([0, -1]), "class -1 is out of range"),
    ("a float class", lambda: ak.Region(1.5), "integer"),
    ("a NaN mask", lambda: ak.Region(1, torch.full((SIZE, SIZE), float("nan"))), "NaN"),
])
@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_bad_regions_are_named_before_any_work(case, target, message, method, images):
    model = segmenter("lraspp_mobilenet_v3_large")
    before = state(model)
    with pytest.raises(TargetError, match=None) as info:
        ak.explain(model, images, target(), method=method)
    assert message in str(info.value), (case, str(info.value))
    assert isinstance(info.value, ValueError)
    untouched(model, before)


def test_a_classifier_output_names_what_fits(images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(TargetError, match=r"returned Tensor\(2, 4\)\. \(B, classes\) scores fit Class"):
        ak.explain(model, images, ak.Region(1), method="saliency")


def test_a_model_in_training_mode_stays_in_it(images, mask):
    model = copy.deepcopy(segmenter("lraspp_mobilenet_v3_large")).train()
    before = state(model)
    ak.explain(model, images, ak.Region(1, mask), method="saliency")
    untouched(model, before, training=True)
