"""Multi-label models through ``explain``: ``Labels([...])`` gives one map per (image, label).

Reference: the same method run once per label with a plain callable target
``lambda out: torch.sigmoid(out[:, label])`` (no target object), the rows put together
image-major here; ``score="logit"`` against ``lambda out: out[:, label]``.
"""

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import TargetError

LABELS = [4, 0, 2]


class MultiLabel(nn.Module):
    """A small CNN with 5 independent labels (trained with sigmoid + BCE in real life)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MultiLabel().eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))


def per_label(model, images, method, score, **options):
    """One plain-callable run per label, rows ordered image-major: (image, label)."""
    runs = [ak.explain(model, images, (lambda out, lab=lab: score(out[:, lab])), method=method,
                       **options).values for lab in LABELS]
    return torch.stack(runs, dim=1).flatten(0, 1)


@pytest.mark.parametrize("method, options", [
    ("saliency", {}),
    ("gradcam", {"layer": "features.2"}),
    ("occlusion", {"window": 8, "stride": 8}),
])
def test_one_map_per_label_image_major(model, images, method, options):
    ours = ak.explain(model, images, ak.Labels(LABELS), method=method, **options)
    assert len(ours.values) == 2 * len(LABELS)
    assert ours.meta["image_index"].tolist() == [0, 0, 0, 1, 1, 1]
    assert ours.target.tolist() == LABELS * 2
    expected = per_label(model, images, method, torch.sigmoid, **options)
    torch.testing.assert_close(ours.values, expected, rtol=1e-5, atol=1e-7)
    # reshaped per image: row (i, k) explains label LABELS[k] of image i
    torch.testing.assert_close(ours.values.reshape(2, len(LABELS), *ours.values.shape[1:])[1, 2],
                               expected[5])


def test_logit_option_explains_the_logit(model, images):
    ours = ak.explain(model, images, ak.Labels(LABELS, score="logit"), method="saliency")
    expected = per_label(model, images, "saliency", lambda logit: logit)
    torch.testing.assert_close(ours.values, expected, rtol=1e-5, atol=1e-7)
    sigmoid = ak.explain(model, images, ak.Labels(LABELS), method="saliency")
    assert not torch.allclose(ours.values, sigmoid.values)  # sigmoid' scales each row


def test_sigmoid_saliency_is_the_chain_rule_by_hand(model, images):
    """d sigmoid(z)/dx = sigmoid(z) (1 - sigmoid(z)) dz/dx, per (image, label)."""
    ours = ak.explain(model, images, ak.Labels([3]), method="saliency")
    x = images.clone().requires_grad_(True)
    z = model(x)[:, 3]
    (dz,) = torch.autograd.grad(z.sum(), x)
    p = torch.sigmoid(z.detach())
    torch.testing.assert_close(ours.values, (p * (1 - p))[:, None, None, None] * dz.abs(),
                               rtol=1e-5, atol=1e-8)


def test_chunks_split_the_expanded_rows(model, images):
    whole = ak.explain(model, images, ak.Labels(LABELS), method="saliency")
    chunked = ak.explain(model, images, ak.Labels(LABELS), method="saliency", batch_size=4)
    torch.testing.assert_close(chunked.values, whole.values)
    assert chunked.meta["image_index"].tolist() == whole.meta["image_index"].tolist()


def test_images_of_different_sizes_give_one_result_each(model):
    small, large = torch.rand(3, 12, 12), torch.rand(3, 20, 16)
    results = ak.explain(model, [small, large], ak.Labels([1, 3]), method="saliency")
    assert [tuple(r.values.shape) for r in results] == [(2, 3, 12, 12), (2, 3, 20, 16)]
    alone = ak.explain(model, large[None], ak.Labels([1, 3]), method="saliency")
    torch.testing.assert_close(results[1].values, alone.values)
    assert results[1].target.tolist() == [1, 3]


@pytest.mark.parametrize("target, message", [
    (lambda: ak.Labels([1, 5]), "label 5 is out of range"),
    (lambda: ak.Labels([]), "at least one label"),
    (lambda: ak.Labels([1.5]), "integer"),
    (lambda: ak.Labels([1], score="softmax"), "'sigmoid' or 'logit'"),
])
def test_bad_labels_are_named(model, images, target, message):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TargetError) as info:
        ak.explain(model, images, target(), method="saliency")
    assert message in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_a_segmentation_output_names_region(images):
    with pytest.raises(TargetError, match=r"shape \(6, 4, 14, 14\).*\(B, classes, H, W\) fits Region\(cls\)"):
        ak.explain(nn.Conv2d(3, 4, 3), images, ak.Labels([0, 1, 2]), method="saliency")
