"""The CAM family against its peers: pytorch-grad-cam and Captum, each method fed
from the one peer table (``attribkit.bench.peers``).

Peer references: pytorch-grad-cam 1.5.7 (``pytorch_grad_cam``) and Captum 0.9, on
torchvision resnet18 / vgg11 with random weights in eval mode. pytorch-grad-cam
returns ``minmax(resize(minmax(ReLU(L))))`` (it min-max scales each layer map,
resizes it with cv2 bilinear, then scales again when aggregating layers);
:func:`like_pgc` applies the same steps to our layer maps, using
``Attribution.upsampled()`` for the resize (cv2's INTER_LINEAR on float32 is the
half-pixel bilinear of ``F.interpolate(align_corners=False)`` when upsampling).
"""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.bench.peers import LIBRARIES, PEERS, peer
from tests.cam_support import CAM_METHODS, PER_CHANNEL


pytest.importorskip(LIBRARIES["pytorch-grad-cam"])

PGC = "pytorch-grad-cam"
WITH_PGC = [m for m in CAM_METHODS if any(p.method == m and p.library == PGC for p in PEERS)]
TARGETS = [1, 3, 5, 7]
TOL = 1e-5


def minmax(v):
    """pytorch-grad-cam's per-image scaling: ``x - min``, then ``/ (1e-7 + max)``."""
    v = v - v.amin(dim=(-2, -1), keepdim=True)
    return v / (1e-7 + v.amax(dim=(-2, -1), keepdim=True))


def like_pgc(result):
    """Our ``(B, 1, h, w)`` result post-processed as pytorch-grad-cam does, ``(B, H, W)``."""
    scaled = dataclasses.replace(result, values=minmax(result.values))
    return minmax(scaled.upsampled().clamp(min=0))[:, 0].numpy()


def pgc_run(method, model, layer, x, targets, *, trainable=None, **options):
    """pytorch-grad-cam's result, from its entry in the peer table (``options`` are set
    on its CAM object, e.g. ``batch_size``). ``trainable`` names the one parameter left
    with ``requires_grad`` while it runs: its ``loss.backward()`` then skips the weight
    gradients of the rest (the classifier of vgg11 alone has 120M weights); the
    gradient at the layer, and so the result, is the same."""
    frozen = [p for n, p in model.named_parameters() if p.requires_grad and n != trainable]
    try:
        for p in frozen:
            p.requires_grad_(False)
        cls = SignFixedEigenCAM if method == "eigencam" else None
        return peer(method, PGC).call(model, x, targets, layer, cls=cls, **options)
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for p in model.parameters():
            p.grad = None


class SignFixedEigenCAM(peer("eigencam", PGC).load()):
    """pytorch-grad-cam's EigenCAM with our orientation of the SVD's arbitrary sign:
    the first principal direction ``v`` has ``sum_k v_k >= 0``, i.e. the projection
    correlates positively with the channel-mean of the centred activations."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        projection = super().get_cam_image(input_tensor, target_layer, targets, activations, grads,
                                           eigen_smooth)
        centred = activations - activations.mean(axis=(2, 3), keepdims=True)
        flip = (projection * centred.mean(axis=1)).sum(axis=(1, 2)) < 0
        projection[flip] *= -1
        return projection


# ------------------------------------------------------------ pytorch-grad-cam


# resnet18: layer4 at 64x64 is 2x2; vgg11: the last conv block's ReLU (features.19) at
# 64x64 is 4x4 (features[-1], after the last max-pool, would be 2x2).
NETS = {"resnet18": ("layer4", 64, 2, "layer4.1.conv2.weight"),
        "vgg11": ("features.19", 64, 4, "features.18.weight")}


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("method", [m for m in WITH_PGC if m not in PER_CHANNEL])
def test_equals_pytorch_grad_cam(net, method, request):
    model = request.getfixturevalue(net)
    layer_name, size, side, trainable = NETS[net]
    torch.manual_seed(1)
    x = torch.randn(4, 3, size, size)
    ours = ak.explain(model, x, TARGETS, method=method, layer=layer_name)
    reference = pgc_run(method, model, model.get_submodule(layer_name), x, TARGETS,
                        trainable=trainable)
    assert ours.values.shape == (4, 1, side, side)
    np.testing.assert_allclose(like_pgc(ours), reference, rtol=0, atol=TOL)
    assert ours.target.tolist() == TARGETS and ours.layer == layer_name


def test_eigencam_projection_equals_pytorch_grad_cam_up_to_the_svd_sign(vgg11):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    torch.manual_seed(1)
    x = torch.randn(4, 3, 64, 64)
    ours = ak.explain(vgg11, x, method="eigencam", layer="features.19", relu=False).values[:, 0]
    acts = vgg11.features[:20](x).detach().numpy()
    reference = get_2d_projection(acts)
    for mine, theirs in zip(ours.numpy(), reference):
        error = min(np.abs(mine - theirs).max(), np.abs(mine + theirs).max())
        assert error <= 1e-4 * np.abs(theirs).max()


# Score-CAM / Ablation-CAM run B*C forwards (twice: ours and the reference). To keep
# the test fast on CPU, resnet18 is explained at layer1 (64 channels, 6x6 maps at
# 24x24 inputs) for 2 images; the small CNN below takes a batch of 4.
@pytest.mark.parametrize("method", [m for m in WITH_PGC if m in PER_CHANNEL])
def test_score_and_ablation_cam_equal_pytorch_grad_cam(method, resnet18):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 24, 24)
    ours = ak.explain(resnet18, x, [3, 7], method=method, layer="layer1", forward_batch_size=48)
    reference = pgc_run(method, resnet18, resnet18.layer1, x, [3, 7], batch_size=64)
    assert ours.values.shape == (2, 1, 6, 6)
    np.testing.assert_allclose(like_pgc(ours), reference, rtol=0, atol=TOL)


@pytest.mark.parametrize("method", [m for m in WITH_PGC if m in PER_CHANNEL])
def test_score_and_ablation_cam_equal_pytorch_grad_cam_on_a_small_cnn(method, tiny_cnn, images):
    targets = [0, 1, 2, 3]
    ours = ak.explain(tiny_cnn, images, targets, method=method, layer="features.2")
    reference = pgc_run(method, tiny_cnn, tiny_cnn.features[2], images, targets)
    np.testing.assert_allclose(like_pgc(ours), reference, rtol=0, atol=TOL)


# --------------------------------------------------------------------- Captum


class Float64:
    """A float64 copy of a model (cached), for tight comparisons."""

    _cache: dict[int, nn.Module] = {}

    @classmethod
    def of(cls, model):
        key = id(model)
        if key not in cls._cache:
            cls._cache[key] = copy.deepcopy(model).double().eval()
        return cls._cache[key]


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.1.bn2", "layer4.1.relu"])
def test_gradcam_equals_captum_layer_gradcam(layer, resnet18):
    model = Float64.of(resnet18)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    reference = peer("gradcam", "captum").call(model, x, [4, 9], model.get_submodule(layer))
    ours = ak.explain(model, x, [4, 9], method="gradcam", layer=layer)
    torch.testing.assert_close(ours.values, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_gradcam_equals_captum(mode, resnet18):
    model = Float64.of(resnet18)
    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with pytest.warns(UserWarning):  # Captum's notes about requires_grad and ReLU hooks
        reference = peer("guided_gradcam", "captum").call(model, x, [2, 8], model.layer4,
                                                          interpolate_mode=mode)
    ours = ak.explain(model, x, [2, 8], method="guided_gradcam", layer="layer4",
                      interpolate_mode=mode)
    assert ours.values.shape == x.shape and ours.layer == "layer4"
    torch.testing.assert_close(ours.values, reference, rtol=0, atol=1e-12)

