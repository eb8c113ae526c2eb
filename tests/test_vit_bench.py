"""The bench on transformers: methods whose needs the model cannot meet (the attention
family on a CNN) are left out quietly, and ``--model synthetic-vit`` (a small timm ViT
trained on the synthetic ground-truth data, cached) resolves and trains."""

import torch

import attribkit as ak
from attribkit.bench.runner import Subject, runnable
from attribkit.testing import TinyCNN
from attribkit.torch.attention import has_attention
from tests.test_vit_models import timm_vit, torchvision_vit, vit_images


def _subject(model: torch.nn.Module, size: int) -> Subject:
    x = torch.rand(2, 3, size, size)
    return Subject("m", model, x, torch.zeros(2, dtype=torch.long), None)


def test_has_attention_finds_vits_and_not_cnns():
    assert has_attention(timm_vit(), vit_images(1))
    assert has_attention(torchvision_vit(), vit_images(1))
    assert not has_attention(TinyCNN().eval(), torch.rand(1, 3, 32, 32))


def test_attention_methods_are_left_out_quietly_on_a_cnn():
    specs = [ak.get_method(m) for m in ("saliency", "gradcam", "raw_attention", "generic_attention")]
    lines: list[str] = []
    kept = runnable(specs, _subject(TinyCNN().eval(), 32), lines.append)
    assert [s.name for s in kept] == ["saliency", "gradcam"] and lines == []
    kept = runnable(specs, _subject(TinyCNN().eval(), 32), lines.append, asked=True)
    assert len(kept) == 2 and len(lines) == 1 and "raw_attention" in lines[0]
    assert runnable(specs, _subject(timm_vit(), 32), lines.append) == specs
