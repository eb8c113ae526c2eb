"""Small randomly initialised transformers (timm and torchvision) shared by the
transformer tests (``test_layout``, ``test_vit_peers``, ``test_attention``), and the
layouts attribkit reads from each (``attribkit.torch.layout``)."""

import pytest
import torch
from torch import nn

from attribkit.torch.layout import channel_last_model, convnext_model, token_layout

timm = pytest.importorskip("timm")

from timm.models.convnext import ConvNeXt as TimmConvNeXt  # noqa: E402
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.swin_transformer import SwinTransformer as TimmSwin  # noqa: E402
from timm.models.vision_transformer import VisionTransformer as TimmViT  # noqa: E402
from torchvision.models.convnext import CNBlockConfig, ConvNeXt  # noqa: E402
from torchvision.models.swin_transformer import SwinTransformer  # noqa: E402
from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

CLASSES = 5
SMALL_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 2,
             "num_classes": CLASSES}


def _seeded(build, seed=0):
    torch.manual_seed(seed)
    return build().eval()


def timm_vit(**kwargs) -> nn.Module:
    """timm ViT, 32x32 inputs, 8x8 patches (a 4x4 grid), 3 blocks of width 32."""
    return _seeded(lambda: TimmViT(**{**SMALL_VIT, **kwargs}))


def timm_deit_distilled() -> nn.Module:
    """timm's distilled DeiT: class and distillation tokens (2 prefix tokens)."""
    return _seeded(lambda: VisionTransformerDistilled(**SMALL_VIT))


def torchvision_vit() -> nn.Module:
    """torchvision ViT, 32x32 inputs, 8x8 patches, 3 blocks; its zero-initialised head
    (torchvision's init) gets random weights, so that the scores depend on the input."""
    def build():
        model = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                  hidden_dim=32, mlp_dim=64, num_classes=CLASSES)
        nn.init.normal_(model.heads.head.weight, std=0.5)
        return model
    return _seeded(build)


def torchvision_swin() -> nn.Module:
    """torchvision Swin (two stages, 4x4 windows): 64x64 inputs give 8x8 last-stage maps."""
    return _seeded(lambda: SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2],
                                           num_heads=[2, 4], window_size=[4, 4], num_classes=CLASSES))


def timm_swin() -> nn.Module:
    """timm Swin (two stages, 4x4 windows, NHWC stages), 64x64 inputs."""
    return _seeded(lambda: TimmSwin(img_size=64, patch_size=4, window_size=4, embed_dim=16,
                                    depths=(2, 2), num_heads=(2, 4), num_classes=CLASSES))


def torchvision_convnext() -> nn.Module:
    return _seeded(lambda: ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)],
                                    num_classes=CLASSES))


def timm_convnext() -> nn.Module:
    return _seeded(lambda: TimmConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32),
                                        num_classes=CLASSES))


def vit_images(n=3, size=32, seed=1):
    torch.manual_seed(seed)
    return torch.randn(n, 3, size, size)


def tokens(model, size):
    found = token_layout(model, size)
    return None if found is None else (found.kind, found.prefix_tokens, found.grid)


def test_token_layouts_are_read_from_the_model():
    assert tokens(timm_vit(), (32, 32)) == ("BNC", 1, (4, 4))
    assert tokens(timm_deit_distilled(), (32, 32)) == ("BNC", 2, (4, 4))
    assert tokens(timm_vit(reg_tokens=4), (32, 32)) == ("BNC", 5, (4, 4))
    assert tokens(timm_vit(class_token=False, global_pool="avg"), (32, 32)) == ("BNC", 0, (4, 4))
    dynamic = timm_vit(dynamic_img_size=True)
    assert tokens(dynamic, (48, 32)) == ("BNC", 1, (6, 4))
    assert tokens(torchvision_vit(), (32, 32)) == ("BNC", 1, (4, 4))
    for model in (torchvision_swin(), timm_swin(), torchvision_convnext(), timm_convnext()):
        assert token_layout(model, (64, 64)) is None


def test_channel_last_and_convnext_models_are_recognised():
    assert channel_last_model(torchvision_swin()) and channel_last_model(timm_swin())
    assert not channel_last_model(torchvision_convnext()) and not channel_last_model(timm_vit())
    assert convnext_model(torchvision_convnext()) and convnext_model(timm_convnext())
    assert not convnext_model(timm_swin())
