"""The built-in RISE: its masks, and its maps against a brute-force loop over the same
masks (one image, one mask at a time), on a classifier and with target objects."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attribkit as ak
from attribkit.errors import InvalidOptionError
from attribkit.perturbation.masks import distinct_rows, masked_scores
from attribkit.perturbation.rise import RiseMasks
from attribkit.testing import assert_model_untouched, forward_rows
from attribkit.torch.targets import ChunkTarget

N, GRID, P = 12, 3, 0.4


def classifier():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 3)).double().eval()


class Segmenter(nn.Module):
    """A dict output, as torchvision's segmentation models give."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return {"out": self.conv(x)}


def images():
    torch.manual_seed(1)
    return torch.rand(2, 3, 10, 9, dtype=torch.float64)


def all_masks(n=N, size=(10, 9), grid=GRID, p=P, seed=0):
    return RiseMasks(n, size, grid=grid, p_keep=p, seed=seed, dtype=torch.float64)[torch.arange(n)]


def brute_force(score, x, masks, baseline=0.0):
    """RISE by hand: sum_i score(x_b * M_i + baseline (1 - M_i)) M_i / (N p), image by image."""
    maps = []
    for b in range(len(x)):
        total = torch.zeros(x.shape[-2:], dtype=torch.float64)
        for i in range(len(masks)):
            m = masks[i, 0]
            total += float(score(b, (x[b] * m + baseline * (1 - m))[None])) * m
        maps.append(total / (len(masks) * P))
    return torch.stack(maps)[:, None]


def test_masks_are_upsampled_grids_cropped_at_random_offsets():
    source = RiseMasks(300, (10, 9), grid=GRID, p_keep=P, seed=3)
    masks = source[torch.arange(300)]
    assert masks.shape == (300, 1, 10, 9) and source.shape == (300, 1, 10, 9)
    assert source.cell == (4, 3) and source.upsampled == (16, 12)  # ceil(H / s), (s + 1) cells
    for i in (0, 7, 299):  # one mask at a time: upsample its grid, slice the crop
        big = F.interpolate(source.grids[i:i + 1], size=(16, 12), mode="bilinear", align_corners=False)
        y, x = source.offsets[i].tolist()
        assert 0 <= y < 4 and 0 <= x < 3
        torch.testing.assert_close(masks[i, 0], big[0, 0, y:y + 10, x:x + 9].clamp(0, 1))
    assert set(source.grids.unique().tolist()) == {0.0, 1.0} and 0 <= masks.min() and masks.max() <= 1
    assert abs(source.grids.mean().item() - P) < 0.05 and abs(masks.mean().item() - P) < 0.05
    assert ((masks > 0.01) & (masks < 0.99)).any()  # smooth, not binary
    assert torch.equal(masks, RiseMasks(300, (10, 9), grid=GRID, p_keep=P, seed=3)[torch.arange(300)])
    assert not torch.equal(masks, RiseMasks(300, (10, 9), grid=GRID, p_keep=P, seed=4)[torch.arange(300)])


@pytest.mark.parametrize("probabilities", [True, False])
def test_class_target_equals_a_loop(probabilities):
    m, x = classifier(), images()
    masks = all_masks()
    top = m(x).argmax(1)

    def score(b, masked):
        out = m(masked)[0]
        return (out.softmax(0) if probabilities else out)[top[b]]

    with torch.no_grad():
        expected = brute_force(score, x, masks, baseline=0.25)
    with assert_model_untouched(m):
        got = ak.explain(m, x, method="rise", n_masks=N, grid=GRID, p_keep=P, baseline=0.25,
                         probabilities=probabilities, forward_batch_size=5)
    assert got.values.shape == (2, 1, 10, 9) and torch.equal(got.target, top)
    torch.testing.assert_close(got.values, expected)
    as_object = ak.explain(m, x, ak.Class(top), method="rise", n_masks=N, grid=GRID, p_keep=P,
                           baseline=0.25, probabilities=probabilities)
    torch.testing.assert_close(as_object.values, expected)


def test_target_object_equals_a_loop():
    m, x = Segmenter().double().eval(), images()
    masks = all_masks()
    region = torch.zeros(10, 9, dtype=torch.bool)
    region[2:6, 3:7] = True
    with torch.no_grad():
        expected = brute_force(lambda b, masked: m(masked)["out"][0, 1][region].sum(), x, masks)
    got = ak.explain(m, x, ak.Region(1, region), method="rise", n_masks=N, grid=GRID, p_keep=P)
    torch.testing.assert_close(got.values, expected)


def test_several_labels_per_image_share_the_forwards():
    m, x = classifier(), images()
    masks = all_masks()
    with torch.no_grad():
        expected = [brute_force(lambda b, masked, c=c: m(masked)[0, c].sigmoid(), x, masks) for c in (0, 2)]
    with forward_rows(m) as rows:
        got = ak.explain(m, x, ak.Labels([0, 2]), method="rise", n_masks=N, grid=GRID, p_keep=P,
                         forward_batch_size=7)
    torch.testing.assert_close(got.values, torch.stack(expected, 1).reshape(4, 1, 10, 9))
    assert got.meta["image_index"].tolist() == [0, 0, 1, 1]
    # the clean forward of the 4 rows, then each of the 2 images once per mask (not each row)
    assert rows == [4, 7, 7, 7, 3], rows


def test_distinct_rows():
    a, b = torch.rand(2, 3, 4, 4)
    first, owner = distinct_rows(torch.stack([a, a, b, a, b]))
    assert first.tolist() == [0, 2] and owner.tolist() == [0, 0, 1, 0, 1]


def test_one_image_with_two_baselines_is_two_images():
    m = classifier()
    x = images()[:1].expand(2, -1, -1, -1)
    baseline = torch.stack([torch.zeros(3, 10, 9), torch.ones(3, 10, 9)]).double()
    masks = all_masks()
    target = ChunkTarget(torch.tensor([1, 1]))
    target.indices_for(m(x))
    with forward_rows(m) as rows:
        got = masked_scores(ak.as_predict(m), x, masks, target, baseline=baseline, rows=N)
    assert rows == [N, N]  # not shared: the masked images differ
    with torch.no_grad():
        expected = [[float(m((x[0] * mk + baseline[b] * (1 - mk))[None])[0, 1]) for mk in masks]
                    for b in range(2)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype))


def test_batch_equals_per_image_and_numpy_callable():
    m, x = classifier(), images()
    options = {"method": "rise", "n_masks": N, "grid": GRID, "p_keep": P}
    batched = ak.explain(m, x, **options).values
    per_image = torch.cat([ak.explain(m, x[i:i + 1], **options).values for i in range(2)])
    torch.testing.assert_close(batched, per_image)
    via_numpy = ak.explain(lambda a: m(torch.from_numpy(a)).detach().numpy(), x.numpy(), **options)
    assert isinstance(via_numpy.values, np.ndarray)
    np.testing.assert_allclose(via_numpy.values, batched.numpy(), rtol=1e-10, atol=1e-12)


def test_seed_reproducible():
    m, x = classifier(), images()
    first = ak.explain(m, x, method="rise", n_masks=N, seed=7).values
    assert torch.equal(first, ak.explain(m, x, method="rise", n_masks=N, seed=7).values)
    assert not torch.equal(first, ak.explain(m, x, method="rise", n_masks=N, seed=8).values)


@pytest.mark.parametrize("options", [{"n_masks": 0}, {"grid": 0}, {"p_keep": 0.0}, {"p_keep": 1.0},
                                     {"forward_batch_size": 0}, {"baseline": float("nan")},
                                     {"n_masks": 2.5}])
def test_bad_options_refused_before_any_forward(options):
    m, x = classifier(), images()
    with forward_rows(m) as rows, pytest.raises(InvalidOptionError):
        ak.explain(m, x, method="rise", **options)
    assert rows == []
