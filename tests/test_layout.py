"""Layouts of a CAM layer: channels-first, channel-last and tokens, read from the model
(``attribkit.torch.layout``) or given by ``layout=``/``prefix_tokens=``/``grid=``."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attribkit as ak
from attribkit.errors import InvalidOptionError, LayerError
from attribkit.testing import assert_model_untouched
from tests.test_vit_models import (CLASSES, timm_convnext, timm_deit_distilled, timm_swin, timm_vit,
                                   torchvision_convnext, torchvision_swin, vit_images)

TARGETS = [0, 3]


class TokenNet(nn.Module):
    """Not a known transformer: 4x4 patches to 8 channels, one class token in front,
    a token-wise MLP, the class token plus the mean patch token to the classes."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.mix = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.mix(torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1))
        return self.fc(tokens[:, 0] + tokens[:, 1:].mean(1))


class ChannelLastNet(nn.Module):
    """Not a known model: a channel-last ``Linear -> GELU`` between two convolutions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.linear = nn.Linear(6, 6)
        self.act = nn.GELU()
        self.fc = nn.Linear(6, CLASSES)

    def forward(self, x):
        y = self.act(self.linear(self.conv(x).permute(0, 2, 3, 1)))
        return self.fc(y.mean(dim=(1, 2)))


def by_hand_gradcam(model, x, targets, layer, to_bchw):
    """Grad-CAM written out: a forward hook keeps the layer's output, autograd gives its
    gradient, ``to_bchw`` reads both as (B, C, h, w)."""
    kept = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, o: kept.update(a=o))
    try:
        scores = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(scores[torch.arange(len(x)), targets].sum(), kept["a"])
    acts, grads = to_bchw(kept["a"].detach()), to_bchw(grad)
    return F.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1, keepdim=True))


def gradcam(model, x, **kwargs):
    return ak.explain(model, x, TARGETS, method="gradcam", **kwargs).values


def test_tokens_of_an_unknown_model_need_layout_and_then_equal_the_hand_computed_map():
    torch.manual_seed(0)
    model, x = TokenNet().eval(), vit_images(2, 16)
    with pytest.raises(LayerError, match=r"layout='BNC'.*prefix_tokens=.*grid="):
        gradcam(model, x, layer="mix")
    got = gradcam(model, x, layer="mix", layout="BNC", prefix_tokens=1, grid=(4, 4))
    want = by_hand_gradcam(model, x, TARGETS, "mix",
                           lambda t: t[:, 1:].reshape(len(t), 4, 4, -1).permute(0, 3, 1, 2))
    torch.testing.assert_close(got, want.detach(), rtol=1e-4, atol=1e-6)
    assert got.abs().sum() > 0
    with pytest.raises(LayerError, match=r"17 tokens, not 2 prefix tokens \+ a 4x4"):
        gradcam(model, x, layer="mix", layout="BNC", prefix_tokens=2, grid=(4, 4))


def test_channel_last_output_of_an_unknown_model_is_never_read_channels_first():
    torch.manual_seed(0)
    model, x = ChannelLastNet().eval(), vit_images(2, 8)
    with assert_model_untouched(model), pytest.raises(LayerError, match=r"channel-last.*layout='BHWC'"):
        gradcam(model, x, layer="act")
    want = by_hand_gradcam(model, x, TARGETS, "act", lambda t: t.permute(0, 3, 1, 2)).detach()
    torch.testing.assert_close(gradcam(model, x, layer="act", layout="BHWC"), want, rtol=1e-4, atol=1e-6)
    for method in ("ablationcam", "cam"):  # these read the raw output: refused, not misread
        with pytest.raises(LayerError, match=r"channels-first.*BHWC"):
            ak.explain(model, x, method=method, layer="linear")
        with pytest.raises(LayerError, match=r"channel-last.*takes channels-first layers only and no layout="):
            ak.explain(model, x, method=method, layer="act")
    # a Linear on the last dimension says it by its type
    assert gradcam(model, x, layer="linear").shape == (2, 1, 8, 8)
    assert gradcam(model, x, layer="conv").shape == (2, 1, 8, 8)


def test_swin_stage_is_read_channel_last():
    """The issue's case: Grad-CAM on Swin's last stage, (B, h, w, C), read channels-first
    by mistake gave an unrelated map."""
    x = vit_images(2, 64)
    for model, layer in ((torchvision_swin(), "features.3"), (timm_swin(), "layers.1")):
        auto = gradcam(model, x, layer=layer)
        assert auto.shape == (2, 1, 8, 8)
        want = by_hand_gradcam(model, x, TARGETS, layer, lambda t: t.permute(0, 3, 1, 2)).detach()
        torch.testing.assert_close(auto, want, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gradcam(model, x, layer=layer, layout="BHWC"), auto)
        forced = gradcam(model, x, layer=layer, layout="BCHW")  # the override always wins
        assert forced.shape == (2, 1, 8, 32)  # (h, w, C) read as (C, h, w)


@pytest.mark.parametrize("build, layer, kind", [
    (torchvision_convnext, "features.3.0.block.4", "BHWC"),  # GELU after Permute([0, 2, 3, 1])
    (torchvision_convnext, "features.3.0", "BCHW"),
    (torchvision_convnext, "features.3.0.block.2", "BHWC"),  # LayerNorm on the last dimension
    (timm_convnext, "stages.3.blocks.0.mlp.act", "BHWC"),
    (timm_convnext, "stages.3.blocks.0.norm", "BHWC"),
    (timm_convnext, "stages.3.blocks.0", "BCHW"),
    (timm_convnext, "stages.3", "BCHW"),
], ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_convnext_layers(build, layer, kind):
    model, x = build(), vit_images(2, 64)
    to_bchw = (lambda t: t) if kind == "BCHW" else (lambda t: t.permute(0, 3, 1, 2))
    want = by_hand_gradcam(model, x, TARGETS, layer, to_bchw).detach()
    torch.testing.assert_close(gradcam(model, x, layer=layer), want, rtol=1e-4, atol=1e-6)


def test_vit_tokens_prefix_tokens_and_dynamic_sizes():
    x = vit_images(2)
    vit = timm_vit()
    auto = gradcam(vit, x, layer="blocks.1")
    torch.testing.assert_close(auto, gradcam(vit, x, layer="blocks.1", layout="BNC", prefix_tokens=1,
                                             grid=(4, 4)))
    deit = timm_deit_distilled()  # class + distillation token
    want = by_hand_gradcam(deit, x, TARGETS, "blocks.2.norm1",
                           lambda t: t[:, 2:].reshape(len(t), 4, 4, -1).permute(0, 3, 1, 2))
    torch.testing.assert_close(gradcam(deit, x), want.detach(), rtol=1e-4, atol=1e-6)
    with pytest.raises(LayerError, match="18 tokens, not 1 prefix tokens"):
        gradcam(deit, x, prefix_tokens=1, grid=(4, 4))
    registers = timm_vit(reg_tokens=3)
    assert gradcam(registers, x).shape == (2, 1, 4, 4)
    dynamic = timm_vit(dynamic_img_size=True)
    assert gradcam(dynamic, vit_images(2, 48)[..., :40]).shape == (2, 1, 6, 5)


def test_vit_attention_internals_are_refused_with_the_reason():
    """The issue's wrong auto pick: a (B, heads, N, head dim) tensor drawn as an image."""
    with pytest.raises(LayerError, match=r"not an image-shaped map.*heads, tokens, head dim"):
        gradcam(timm_vit(), vit_images(2), layer="blocks.2.attn.k_norm")


def test_methods_that_read_the_raw_output_refuse_channel_last_and_tokens():
    x = vit_images(2, 64)
    for method in ("ablationcam", "cam"):
        with pytest.raises(LayerError, match="channels-first.*BHWC"):
            ak.explain(torchvision_swin(), x, method=method, layer="features.3")
    with pytest.raises(LayerError, match=r"\(B, C, h, w\) tensor"):
        ak.explain(timm_vit(), vit_images(2), method="ablationcam")


def test_every_layout_aware_cam_runs_on_a_vit():
    vit, x = timm_vit(), vit_images(2)
    for spec in ak.methods():
        if spec.family == "cam" and "layout" in spec.options:
            values = ak.explain(vit, x, TARGETS, method=spec.name).values
            assert torch.isfinite(values).all(), spec.name


@pytest.mark.parametrize("options, match", [
    ({"layout": "NCHW"}, "layout must be one of"),
    ({"layout": "BHWC", "prefix_tokens": 1}, "describe tokens"),
    ({"prefix_tokens": -1}, "non-negative"),
    ({"grid": (4, 0)}, "grid must be"),
])
def test_bad_layout_options(options, match):
    with pytest.raises(InvalidOptionError, match=match):
        gradcam(timm_vit(), vit_images(2), **options)


class NormHeadCNN(nn.Module):
    """A CNN with a LayerNorm on its pooled (B, C) features: nothing channel-last."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3), nn.ReLU())
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, CLASSES)

    def forward(self, x):
        return self.fc(self.norm(self.features(x).mean(dim=(2, 3))))


def test_a_layer_norm_or_linear_on_vectors_does_not_make_a_cnn_ambiguous():
    torch.manual_seed(0)
    model, x = NormHeadCNN().eval(), vit_images(2, 8)
    want = by_hand_gradcam(model, x, TARGETS, "features", lambda t: t).detach()
    torch.testing.assert_close(gradcam(model, x), want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gradcam(model, x, layer="features.3"), want, rtol=1e-4, atol=1e-6)
