"""attribkit's own LRP: conservation, batching, the model left as it was, clear errors.
(Equality with Zennit: tests/test_lrp_zennit.py.)"""

import pytest
import torch
import torchvision
from torch import nn

import attribkit as ak
from attribkit.errors import InvalidOptionError
from attribkit.testing import RaiseOnCall, TinyCNN, as_users_have_it, assert_model_untouched
from attribkit.torch.lrp.composites import COMPOSITES, LRPRuleError

BOX = {"low": -4.0, "high": 4.0}


def no_forward_overrides(model):
    return [n for n, m in model.named_modules() if "forward" in m.__dict__]


@pytest.fixture(scope="module")
def bias_free_resnet():
    """resnet18 whose merged BatchNorms and classifier have no bias (zero running means
    and BatchNorm biases, random variances and scales, no fc bias), in float64. The
    BatchNorms' eps is 0: a merged BatchNorm is left scaling by (1 + eps)^-1/2, as in
    Zennit, which would make the canonized logit differ from the model's by ~5e-6 per
    BatchNorm on the path (docs/lrp.md)."""
    gen = torch.Generator().manual_seed(3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.eps = 0.0
        model.fc.bias.zero_()
    return model.double()


@pytest.mark.parametrize("composite", COMPOSITES)
def test_relevance_is_conserved_without_biases(bias_free_resnet, composite):
    """epsilon -> 0, no biases: the input relevance sums to the explained logit."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).double()
    targets = torch.tensor([2, 5])
    options = BOX if composite == "epsilon_gamma_box" else {}
    result = ak.explain(bias_free_resnet, x, targets, method="lrp", composite=composite,
                        epsilon=1e-12, stabilizer=1e-12, **options)
    with torch.no_grad():
        logits = bias_free_resnet(x).gather(1, targets[:, None]).squeeze(1)
    sums = result.values.sum(dim=(1, 2, 3))
    torch.testing.assert_close(sums, logits, rtol=1e-6, atol=0)


def test_conservation_through_maxpool_and_linear_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 8, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(32, 16, bias=False), nn.ReLU(),
                          nn.Linear(16, 4, bias=False)).double().eval()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    result = ak.explain(model, x, method="lrp", epsilon=1e-12, stabilizer=1e-12)
    with torch.no_grad():
        logits = model(x).gather(1, result.target[:, None]).squeeze(1)
    torch.testing.assert_close(result.values.sum(dim=(1, 2, 3)), logits, rtol=1e-8, atol=0)


@pytest.mark.parametrize("composite", COMPOSITES)
def test_batched_equals_per_image(resnet18, composite):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batched = ak.explain(resnet18, x, method="lrp", composite=composite).values
    single = ak.explain(resnet18, x, method="lrp", composite=composite, batch_size=1).values
    scale = single.abs().amax(dim=(1, 2, 3), keepdim=True)
    assert ((batched - single).abs() / scale).max() < 1e-4


def test_model_left_as_it_was(resnet18):
    x = torch.randn(2, 3, 32, 32)
    with assert_model_untouched(resnet18):
        ak.explain(resnet18, x, method="lrp", composite="epsilon_gamma_box")
    assert not no_forward_overrides(resnet18)


def test_model_as_users_have_it_left_alone(images):
    torch.manual_seed(0)
    model = as_users_have_it(TinyCNN())
    with assert_model_untouched(model):
        result = ak.explain(model, images, 0, method="lrp")
    assert model.training and result.values.shape == images.shape
    assert not no_forward_overrides(model)


def test_a_module_without_a_rule_is_named(images):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LayerNorm(4 * 10 * 10),
                          nn.Linear(400, 3))
    with assert_model_untouched(model), pytest.raises(LRPRuleError, match=r"'3' of type LayerNorm"):
        ak.explain(model, images, method="lrp")
    assert not no_forward_overrides(model)


def test_resnet_without_canonizer_is_refused(resnet18):
    with assert_model_untouched(resnet18), pytest.raises(LRPRuleError, match="canonize=True"):
        ak.explain(resnet18, torch.randn(1, 3, 32, 32), method="lrp", canonize=False)


def test_overrides_removed_when_the_model_raises(images):
    torch.manual_seed(0)
    inner = TinyCNN().eval()
    model = RaiseOnCall(inner)
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom"):
        ak.explain(model, images, 0, method="lrp")
    assert not no_forward_overrides(model)


@pytest.mark.parametrize("options, match", [
    ({"composite": "zplus_everywhere"}, "unknown LRP composite"),
    ({"composite": "epsilon_alpha2_beta1", "alpha": 3.0, "beta": 1.0}, "alpha - beta = 1"),
    ({"epsilon": -1.0}, "epsilon must be >= 0"),
])
def test_bad_options(tiny_cnn, images, options, match):
    with assert_model_untouched(tiny_cnn), pytest.raises(InvalidOptionError, match=match):
        ak.explain(tiny_cnn, images, method="lrp", **options)


def test_the_name_lrp_is_the_built_in():
    spec = ak.get_method("lrp")
    assert spec.family == "lrp" and spec.plugin == "attribkit.families.lrp"
    assert spec.options["composite"] == "auto" and spec.options["canonize"] is True


def test_bench_scores_the_composites_as_variants(tmp_path):
    from attribkit.bench.runner import BenchConfig, bench_method, choose_methods
    from attribkit.errors import UnknownMethodError

    names = {p: [s.name for s in choose_methods(BenchConfig(out=tmp_path, profile=p))]
             for p in ("quick", "full")}
    transformers = ["lrp.attnlrp", "lrp.cp_lrp"]  # kept only for models with attention (runnable)
    assert [n for n in names["quick"] if n.startswith("lrp")] == ["lrp", "lrp.epsilon_gamma_box",
                                                                  *transformers]
    assert [n for n in names["full"] if n.startswith("lrp")] == [
        "lrp", "lrp.epsilon_gamma_box", "lrp.epsilon_alpha2_beta1", "lrp.epsilon_plus", *transformers]
    spec = bench_method("lrp.epsilon_plus")
    assert spec.options["composite"] == "epsilon_plus" and spec.family == "lrp"
    with pytest.raises(UnknownMethodError):
        bench_method("lrp.no_such_composite")
