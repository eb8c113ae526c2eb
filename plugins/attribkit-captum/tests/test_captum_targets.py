"""Captum methods with attribkit's target objects: ``Region`` (a segmenter's dict output),
``Similarity`` (embeddings), ``Labels`` (one row per label).

Captum takes an int / tensor target or a forward returning one scalar per row; the adapter
gives it the model followed by the target's score (``attribkit_captum.heads.TargetHead``).
Reference: Captum itself, called here on a forward that computes the score written out in
the test (``target=None``), one image at a time, so the adapter's row bookkeeping
(integrated gradients' steps, occlusion's batched perturbations) is checked too.
"""

import captum.attr
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attribkit as ak
from attribkit.errors import TargetError


class Segmenter(nn.Module):
    """A tiny segmentation network with torchvision's output: ``{"out": (B, 3, H, W)}``."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        logits = self.classifier(self.backbone(x))
        return {"out": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


class Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 5))

    def forward(self, x):
        return self.head(self.features(x))


class Score(nn.Module):
    """The written-out score of one image: ``model`` followed by ``score(output)``."""

    def __init__(self, model, score):
        super().__init__()
        self.model, self.score = model, score

    def forward(self, x):
        return self.score(self.model(x))


@pytest.fixture
def images():
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def masks():
    m = torch.zeros(2, 8, 8)
    m[0, :4, :5] = 1
    m[1, 3:, 2:] = 1
    return m


@pytest.fixture
def segmenter():
    torch.manual_seed(0)
    return Segmenter().eval()


def per_image_captum(cls, model, images, score_of, **kwargs):
    """Captum's ``cls`` on each image alone, for a scalar forward (target=None)."""
    maps = []
    for i in range(len(images)):
        forward = Score(model, lambda out, i=i: score_of(out, i))
        maps.append(cls(forward).attribute(images[i:i + 1], **kwargs))
    return torch.cat(maps)


def test_integrated_gradients_with_region_equals_captum_on_the_written_score(segmenter, images, masks):
    classes = [2, 0]
    ours = ak.explain(segmenter, images, ak.Region(classes, masks), method="captum.integrated_gradients",
                      n_steps=12, internal_batch_size=6)  # steps split across forwards

    def region(out, i):
        return (out["out"][:, classes[i]] * masks[i]).sum((1, 2))

    ref = per_image_captum(captum.attr.IntegratedGradients, segmenter, images, region, n_steps=12,
                           baselines=torch.zeros(1, 3, 8, 8))
    torch.testing.assert_close(ours.values, ref, rtol=1e-4, atol=1e-6)
    assert ours.target.tolist() == classes
    chunked = ak.explain(segmenter, images, ak.Region(classes, masks), batch_size=1,
                         method="captum.integrated_gradients", n_steps=12)  # image 1 alone in its chunk
    torch.testing.assert_close(chunked.values, ref, rtol=1e-4, atol=1e-6)


def test_occlusion_with_similarity_equals_captum_on_the_written_cosine(images):
    torch.manual_seed(0)
    model = Embedder().eval()
    references = torch.randn(2, 5, generator=torch.Generator().manual_seed(4))
    ours = ak.explain(model, images, ak.Similarity(references), method="captum.occlusion",
                      sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), perturbations_per_eval=5)

    def cosine(out, i):
        ref = references[i]
        return (out * ref).sum(1) / (out.norm(dim=1) * ref.norm())

    ref = per_image_captum(captum.attr.Occlusion, model, images, cosine,
                           sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=0.0)
    torch.testing.assert_close(ours.values, ref, rtol=1e-4, atol=1e-6)


def test_saliency_with_similarity_equals_captum(images):
    torch.manual_seed(0)
    model = Embedder().eval()
    reference = torch.randn(5, generator=torch.Generator().manual_seed(4))
    ours = ak.explain(model, images, ak.Similarity(reference), method="captum.saliency")
    ref = per_image_captum(captum.attr.Saliency, model, images,
                           lambda out, i: F.cosine_similarity(out, reference[None], dim=1))
    torch.testing.assert_close(ours.values, ref, rtol=1e-5, atol=1e-7)


def test_a_per_image_method_with_region_runs(segmenter, images, masks):
    """gradient_shap calls Captum one image at a time: each call reads its own image's mask."""
    ours = ak.explain(segmenter, images, ak.Region([2, 0], masks), method="captum.gradient_shap")
    assert ours.values.shape == images.shape and bool(ours.values.abs().sum() > 0)


def test_labels_give_one_row_per_label(images):
    torch.manual_seed(0)
    model = Embedder().eval()  # 5 outputs, read as 5 labels
    ours = ak.explain(model, images, ak.Labels([3, 1]), method="captum.input_x_gradient")
    assert ours.meta["image_index"].tolist() == [0, 0, 1, 1]
    for row, (image, label) in enumerate([(0, 3), (0, 1), (1, 3), (1, 1)]):
        forward = Score(model, lambda out, label=label: torch.sigmoid(out[:, label]))
        ref = captum.attr.InputXGradient(forward).attribute(images[image:image + 1])
        torch.testing.assert_close(ours.values[row:row + 1], ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("target, message", [
    (lambda: ak.Region(3), "class 3 is out of range"),
    (lambda: ak.Similarity(torch.ones(5)), "Similarity reads (B, D) embeddings"),
    (lambda: ak.Region(1, torch.ones(4, 6)), "aspect ratio"),
])
def test_a_target_that_does_not_fit_is_named_before_captum_runs(segmenter, images, target, message):
    before = {k: v.clone() for k, v in segmenter.state_dict().items()}
    with pytest.raises(TargetError) as info:
        ak.explain(segmenter, images, target(), method="captum.integrated_gradients")
    assert message in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in segmenter.state_dict().items())
    assert all(not m._forward_hooks and not m._backward_hooks for m in segmenter.modules())
