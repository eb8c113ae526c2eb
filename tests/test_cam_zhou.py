"""CAM (Zhou et al. 2016) by hand: the classifier-weighted sum of the activations
of a GAP + linear head, found on resnet18, refused on any other head."""

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import LayerError, TargetError



def test_cam_is_the_classifier_weighted_sum_of_activations(tiny_cnn, images):
    targets = [4, 0, 2, 1]
    acts = tiny_cnn.features(images)
    raw = torch.einsum("bk,bkhw->bhw", tiny_cnn.fc.weight[targets], acts)[:, None].detach()
    ours = ak.explain(tiny_cnn, images, targets, method="cam")
    assert ours.layer == "features"
    torch.testing.assert_close(ours.values, raw.clamp(min=0))
    signed = ak.explain(tiny_cnn, images, targets, method="cam", relu=False)
    torch.testing.assert_close(signed.values, raw)
    # for a GAP + linear head, Grad-CAM (no ReLU) is CAM / (h * w)
    grad = ak.explain(tiny_cnn, images, targets, method="gradcam", layer="features", relu=False)
    torch.testing.assert_close(grad.values * 12 * 12, raw, rtol=1e-4, atol=1e-5)


def test_cam_finds_the_classifier_of_resnet18(resnet18):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 64, 64)
    acts = resnet18.layer4(resnet18.layer3(resnet18.layer2(resnet18.layer1(
        resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(x))))))))
    ours = ak.explain(resnet18, x, [3, 6], method="cam", relu=False)
    expected = torch.einsum("bk,bkhw->bhw", resnet18.fc.weight[[3, 6]], acts)[:, None].detach()
    assert ours.layer == "layer4"
    torch.testing.assert_close(ours.values, expected, rtol=1e-5, atol=1e-5)


def test_cam_refuses_models_without_a_gap_linear_head(vgg11, tiny_cnn, images):
    with pytest.raises(LayerError, match="global average pooling.*no nn.Linear with in_features=512"):
        ak.explain(vgg11, torch.randn(1, 3, 64, 64), method="cam", layer="features")
    with pytest.raises(LayerError, match="no nn.Linear with in_features=8"):
        ak.explain(tiny_cnn, images, method="cam", layer="features.2")
    max_pooled = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                               nn.Linear(4, 3))
    with pytest.raises(LayerError, match="not the spatial mean"):
        ak.explain(max_pooled, images, method="cam", layer="1")
    softmaxed = nn.Sequential(*max_pooled[:2], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 3), nn.Softmax(dim=1))
    with pytest.raises(LayerError, match="not the model's output"):
        ak.explain(softmaxed, images, method="cam", layer="1")
    with pytest.raises(TargetError, match="no class indices"):
        ak.explain(tiny_cnn, images, lambda s: s[:, 0], method="cam")
