"""CLIP and embedding models through ``explain``: ``Similarity(reference)``.

CLIP's image tower (open_clip's ``model.visual``; Hugging Face's ``CLIPModel`` through
``attribkit.targets.clip.image_tower``) is explained for a text embedding; a small CNN
returning ``(B, D)`` embeddings for a retrieval reference. Tiny configs, random weights.

References: ``torch.autograd.grad`` of the cosine written out here; pytorch-grad-cam
1.5.7's ``GradCAM`` with a ``reshape_transform`` for the tokens and a cosine target (its
tutorial's ``SimilarityToConceptTarget``) on the same layer, post-processed as in
``tests/test_cam_peers.py``.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attribkit as ak
from attribkit.errors import TargetError
from attribkit.targets.clip import ImageTower, image_tower

SIZE, PATCH = 32, 8
GRID = SIZE // PATCH
TOKENS = {"layout": "BNC", "prefix_tokens": 1, "grid": (GRID, GRID)}


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def open_clip_model(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    config = {"embed_dim": 12,
              "vision_cfg": {"image_size": SIZE, "layers": 2, "width": 16, "head_width": 8,
                             "patch_size": PATCH, "mlp_ratio": 2},
              "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2,
                           "layers": 1}}
    path = tmp_path_factory.mktemp("open_clip") / "attribkit-tiny-clip.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    torch.manual_seed(0)
    return open_clip.create_model("attribkit-tiny-clip").eval()


@pytest.fixture(scope="module")
def hf_clip():
    transformers = pytest.importorskip("transformers")
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 2, "image_size": SIZE, "patch_size": PATCH}
    text = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 100, "max_position_embeddings": 8,
            "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=12)
    return transformers.CLIPModel(config).eval()


def cosine_saliency(tower, images, reference):
    """|d cos(tower(x), reference) / dx|, written out."""
    x = images.clone().requires_grad_(True)
    embedding = tower(x)
    cos = (embedding * reference).sum(1) / (embedding.norm(dim=1) * reference.norm())
    (grad,) = torch.autograd.grad(cos.sum(), x)
    return grad.abs()


def minmax(v):
    v = v - v.amin(dim=(-2, -1), keepdim=True)
    return v / (1e-7 + v.amax(dim=(-2, -1), keepdim=True))


def pgc_token_gradcam(tower, layer, images, reference):
    """pytorch-grad-cam's GradCAM on a token layer, for the cosine to ``reference``."""
    from pytorch_grad_cam import GradCAM

    def to_grid(tokens):
        return tokens[:, 1:].reshape(len(tokens), GRID, GRID, -1).permute(0, 3, 1, 2)

    def cosine(embedding):
        return F.cosine_similarity(embedding, reference, dim=0)

    with GradCAM(model=tower, target_layers=[layer], reshape_transform=to_grid) as cam:
        return cam(input_tensor=images, targets=[cosine] * len(images))


def like_pgc(result):
    scaled = result.values / (1e-7 + result.values.amax(dim=(-2, -1), keepdim=True))
    up = F.interpolate(minmax(scaled), size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return minmax(up.clamp(min=0))[:, 0].numpy()


def text_embedding(encode, tokens):
    with torch.no_grad():
        out = encode(tokens)
    return getattr(out, "pooler_output", out)[0]


def test_open_clip_image_tower_for_a_text_embedding(open_clip_model, images):
    text = text_embedding(open_clip_model.encode_text, torch.randint(0, 100, (1, 8)))
    tower = open_clip_model.visual
    assert image_tower(open_clip_model) is tower
    ours = ak.explain(tower, images, ak.Similarity(text), method="saliency")
    torch.testing.assert_close(ours.values, cosine_saliency(tower, images, text), rtol=1e-4, atol=1e-7)
    assert torch.equal(ours.meta["target"].embedding, text.expand(2, -1))


def test_open_clip_gradcam_on_tokens_equals_pytorch_grad_cam(open_clip_model, images):
    """The last block's output reaches the embedding through its class token only (its
    patch tokens have no gradient): Grad-CAM reads the tokens entering the last block's
    attention, ``ln_1``, laid out as a class token and a 4x4 grid."""
    text = text_embedding(open_clip_model.encode_text, torch.randint(0, 100, (1, 8)))
    tower = open_clip_model.visual
    layer = "transformer.resblocks.1.ln_1"
    ours = ak.explain(tower, images, ak.Similarity(text), method="gradcam", layer=layer, **TOKENS)
    assert ours.values.shape == (2, 1, GRID, GRID)
    ref = pgc_token_gradcam(tower, tower.get_submodule(layer), images, text)
    corr = np.corrcoef(like_pgc(ours).ravel(), ref.ravel())[0, 1]
    assert corr > 0.999, corr


def test_a_ViT_tower_needs_its_token_layout_named(open_clip_model, images):
    text = text_embedding(open_clip_model.encode_text, torch.randint(0, 100, (1, 8)))
    with pytest.raises(ak.errors.LayerError, match="layout='BNC'.*prefix_tokens="):
        ak.explain(open_clip_model.visual, images, ak.Similarity(text), method="gradcam",
                   layer="transformer.resblocks.1")


def test_hugging_face_clip_model_through_its_image_tower(hf_clip, images):
    tokens = torch.tensor([[0, 5, 7, 9, 2]])
    text = text_embedding(lambda t: hf_clip.get_text_features(input_ids=t), tokens)
    tower = image_tower(hf_clip)
    assert isinstance(tower, ImageTower) and tower.vision_model is hf_clip.vision_model
    with torch.no_grad():
        features = hf_clip.get_image_features(pixel_values=images)
    torch.testing.assert_close(tower(images), getattr(features, "pooler_output", features))

    ours = ak.explain(tower, images, ak.Similarity(text), method="saliency")
    torch.testing.assert_close(ours.values, cosine_saliency(tower, images, text), rtol=1e-4, atol=1e-7)

    layer = "vision_model.encoder.layers.1.layer_norm1"
    cam = ak.explain(tower, images, ak.Similarity(text), method="gradcam", layer=layer, **TOKENS)
    ref = pgc_token_gradcam(tower, tower.get_submodule(layer), images, text)
    corr = np.corrcoef(like_pgc(cam).ravel(), ref.ravel())[0, 1]
    assert corr > 0.999, corr


def test_hugging_face_vision_model_with_projection_is_its_own_tower(hf_clip, images):
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPVisionConfig(**hf_clip.config.vision_config.to_dict())
    config.projection_dim = 12
    model = transformers.CLIPVisionModelWithProjection(config).eval()
    assert image_tower(model) is model
    reference = torch.randn(12, generator=torch.Generator().manual_seed(0))
    ours = ak.explain(model, images, ak.Similarity(reference), method="saliency")  # reads image_embeds

    def tower(x):
        return model(pixel_values=x).image_embeds

    torch.testing.assert_close(ours.values, cosine_saliency(tower, images, reference), rtol=1e-4,
                               atol=1e-7)


class Embedder(nn.Module):
    """A small retrieval CNN: images -> (B, 6) embeddings."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 6))

    def forward(self, x):
        return self.head(self.features(x))


def test_retrieval_embedding_with_one_reference_per_image(images):
    torch.manual_seed(0)
    model = Embedder().eval()
    gallery = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        references = model(gallery)
    ours = ak.explain(model, images, ak.Similarity(references), method="saliency")
    for i in range(2):
        expected = cosine_saliency(model, images[i:i + 1], references[i])
        torch.testing.assert_close(ours.values[i:i + 1], expected, rtol=1e-4, atol=1e-7)

    occ = ak.explain(model, images, ak.Similarity(references), method="occlusion", window=16,
                     stride=16)
    with torch.no_grad():
        hidden = images.clone()
        hidden[..., 16:, :16] = 0
        drop = (F.cosine_similarity(model(images), references)
                - F.cosine_similarity(model(hidden), references))
    torch.testing.assert_close(occ.values[:, 0, 20, 4], drop, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("reference, message", [
    (torch.ones(5), "6 dimensions, the reference 5"),
    (torch.zeros(6), "not zero"),
    (torch.ones(3, 6), "3 embeddings for a batch of 2"),
    (torch.tensor([1, 2, 3, 4, 5, 6]), "float"),
    (torch.ones(2, 2, 6), "(D,) or (B, D)"),
    (torch.tensor([1.0, float("nan"), 0, 0, 0, 0]), "finite"),
])
def test_bad_references_are_named(reference, message, images):
    torch.manual_seed(0)
    model = Embedder().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TargetError) as info:
        ak.explain(model, images, ak.Similarity(reference), method="saliency")
    assert message in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks for m in model.modules())


def test_image_tower_names_what_it_takes():
    with pytest.raises(TargetError, match="open_clip.*CLIPModel.*got Embedder"):
        image_tower(Embedder())


def test_a_segmentation_output_is_not_an_embedding(images):
    model = nn.Conv2d(3, 6, 3)
    with pytest.raises(TargetError, match=r"\(B, D\) embeddings; the model returned Tensor\(2, 6, 30, 30\)\. .*Region"):
        ak.explain(model, images, ak.Similarity(torch.ones(6)), method="saliency")
