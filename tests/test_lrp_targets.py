"""LRP's relevance at the model's output for targets other than one class:
``R_out = out ⊙ ∂S/∂out`` (a Region's masked logits, a callable's own score),
checked by conservation on bias-free models and by linearity against a loop over pixels."""

import pytest
import torch
from torch import nn

import attribkit as ak


@pytest.fixture
def segmenter():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(6, 4, 1, bias=False)).eval()


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.rand(2, 3, 6, 6)


def mask():
    m = torch.zeros(6, 6, dtype=torch.bool)
    m[1:4, 2:5] = True
    return m


def test_a_region_conserves_its_masked_logits(segmenter, x):
    """Box rule first, epsilon elsewhere, no biases: the input relevance sums to the
    region's score (before, every masked pixel started with the whole sum: 9x)."""
    result = ak.explain(segmenter, x, ak.targets.Region(2, mask()), method="lrp", composite="epsilon_gamma_box",
                        epsilon=1e-9)
    expected = segmenter(x)[:, 2][:, mask()].sum(1).detach()
    torch.testing.assert_close(result.values.sum((1, 2, 3)), expected, rtol=1e-4, atol=1e-6)


def test_a_region_is_the_sum_of_its_pixels(segmenter, x):
    """The rules are linear in the relevance they receive: the region's map is the sum of
    the maps of its pixels, each explained alone (a brute-force loop)."""
    region = ak.explain(segmenter, x, ak.targets.Region(1, mask()), method="lrp",
                        composite="epsilon_gamma_box").values
    pixels = sum(ak.explain(segmenter, x, lambda out, i=int(i), j=int(j): out[:, 1, i, j], method="lrp",
                            composite="epsilon_gamma_box").values
                 for i, j in mask().nonzero())
    torch.testing.assert_close(region, pixels, rtol=1e-4, atol=1e-6)


def test_a_callable_conserves_its_own_score(x):
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(5, 3, bias=False)).eval()
    result = ak.explain(net, x, lambda out: 2 * out[:, 1], method="lrp", composite="epsilon_gamma_box",
                        epsilon=1e-9)
    one = ak.explain(net, x, 1, method="lrp", composite="epsilon_gamma_box", epsilon=1e-9)
    torch.testing.assert_close(result.values.sum((1, 2, 3)), 2 * net(x)[:, 1].detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(result.values, 2 * one.values)
