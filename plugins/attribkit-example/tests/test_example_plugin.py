"""The template plugin's own tests: registration through the entry point, and
its method against a hand-written forward hook."""

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.testing import assert_model_untouched


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)).eval()


def test_registered_through_the_entry_point():
    spec = ak.get_method("activation_map")
    assert spec.name == "example.activation_map" and spec.plugin == "example"
    assert {p.name: p.distribution for p in ak.plugins()}["example"] == "attribkit-example"


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_equals_the_reduced_activations(reduce):
    m = model()
    x = torch.randn(3, 3, 8, 8)
    with assert_model_untouched(m):
        r = ak.explain(m, x, method="activation_map", layer="2", reduce=reduce)
    acts = m[:3](x)
    expected = acts.mean(1, keepdim=True) if reduce == "mean" else acts.amax(1, keepdim=True)
    torch.testing.assert_close(r.values, expected)
    assert r.layer == "2" and r.target.tolist() == m(x).argmax(1).tolist()


def test_bad_option_is_named():
    with pytest.raises(ak.InvalidOptionError, match="reduce must be 'mean' or 'max'"):
        ak.explain(model(), torch.randn(1, 3, 8, 8), method="activation_map", reduce="median")
