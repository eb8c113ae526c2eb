"""attribkit's LRP equals Zennit's ``Gradient`` attributor with the same composite and
canonizers, on randomly initialised torchvision models whose BatchNorms have
non-trivial statistics, in float64 and float32 (Zennit is a test-only reference).
The VGGs keep their layer types but get a 64-wide classifier (4096 makes the tests
slow without testing anything more)."""

import pytest
import torch
import torchvision

import attribkit as ak

zennit = pytest.importorskip("zennit")
from zennit.attribution import Gradient  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat  # noqa: E402
from zennit.torchvision import ResNetCanonizer, VGGCanonizer  # noqa: E402

COMPOSITES = ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon_plus"]
MODELS = {"resnet18": ResNetCanonizer, "vgg11_bn": VGGCanonizer, "vgg11": None}
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-4}
LOW, HIGH = -2.5, 3.0
CLASSES = 10


def zennit_composite(name, canonizers, low=LOW, high=HIGH):
    if name == "epsilon_gamma_box":
        return EpsilonGammaBox(low=low, high=high, canonizers=canonizers)
    return {"epsilon_plus_flat": EpsilonPlusFlat, "epsilon_alpha2_beta1": EpsilonAlpha2Beta1,
            "epsilon_plus": EpsilonPlus}[name](canonizers=canonizers)


def randomize_batchnorm(model, gen):
    """Running statistics and affine parameters far from the identity, so that merging
    them into the convolutions is really exercised."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def make_model(arch, gen):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.get_model(arch, num_classes=CLASSES).eval()
        if arch.startswith("vgg"):
            head = model.classifier
            head[0] = torch.nn.Linear(head[0].in_features, 64)
            head[3] = torch.nn.Linear(64, 64)
            head[6] = torch.nn.Linear(64, CLASSES)
    randomize_batchnorm(model, gen)
    return model


@pytest.fixture(scope="module", params=[(arch, dtype) for arch in MODELS
                                        for dtype in (torch.float64, torch.float32)],
                ids=lambda p: f"{p[0]}-{str(p[1])[6:]}")
def subject(request):
    arch, dtype = request.param
    gen = torch.Generator().manual_seed(0)
    model = make_model(arch, gen).to(dtype)
    x = torch.randn(2, 3, 64, 64, generator=gen).clamp(LOW, HIGH).to(dtype)
    return arch, model, x


def zennit_lrp(model, x, targets, composite, canonize=True, arch=None, **kw):
    canonizers = [MODELS[arch]()] if canonize and MODELS[arch] else []
    onehot = torch.nn.functional.one_hot(targets, CLASSES).to(x.dtype)
    with Gradient(model, zennit_composite(composite, canonizers, **kw)) as attributor:
        # relevance at the output: the target logit (attribkit's convention)
        _, relevance = attributor(x.clone(), lambda out: (onehot * out).detach())
    return relevance


def max_relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("composite", COMPOSITES)
def test_equals_zennit(subject, composite):
    arch, model, x = subject
    dtype = x.dtype
    targets = torch.tensor([3, 7])
    options = {"low": LOW, "high": HIGH} if composite == "epsilon_gamma_box" else {}
    ours = ak.explain(model, x, targets, method="lrp", composite=composite, **options).values
    reference = zennit_lrp(model, x, targets, composite, arch=arch)
    assert ours.dtype == dtype
    assert max_relative(ours, reference) < TOLERANCE[dtype]
    if composite == "epsilon_plus_flat" and dtype == torch.float64:  # the comparison is not vacuous
        gxi = ak.explain(model, x, targets, method="input_x_gradient").values
        assert max_relative(gxi, reference) > 1e-2


def test_without_canonizers_equals_zennit_without_them(subject):
    arch, model, x = subject
    if x.dtype != torch.float64:
        pytest.skip("float64 only")
    if arch == "resnet18":
        with pytest.raises(ak.AttribkitError, match="canonize=True"):
            ak.explain(model, x, 0, method="lrp", canonize=False)
        return
    targets = torch.tensor([1, 2])
    ours = ak.explain(model, x, targets, method="lrp", canonize=False).values
    reference = zennit_lrp(model, x, targets, "epsilon_plus_flat", canonize=False, arch=arch)
    assert max_relative(ours, reference) < 1e-6
    if arch == "vgg11_bn":  # merging changes the result: the canonizer matters
        merged = ak.explain(model, x, targets, method="lrp").values
        assert max_relative(merged, ours) > 1e-3


def test_per_channel_box_bounds_equal_zennit(subject):
    arch, model, x = subject
    if arch != "vgg11_bn" or x.dtype != torch.float64:
        pytest.skip("one model is enough")
    low = torch.tensor([-2.5, -2.6, -2.7], dtype=torch.float64)
    high = torch.tensor([3.0, 3.1, 3.2], dtype=torch.float64)
    ours = ak.explain(model, x, 4, method="lrp", composite="epsilon_gamma_box",
                      low=low, high=high, gamma=0.5).values
    canon = [VGGCanonizer()]
    composite = EpsilonGammaBox(low=low[None, :, None, None], high=high[None, :, None, None],
                                gamma=0.5, canonizers=canon)
    onehot = torch.nn.functional.one_hot(torch.tensor([4, 4]), CLASSES).double()
    with Gradient(model, composite) as attributor:
        _, reference = attributor(x.clone(), lambda out: (onehot * out).detach())
    assert max_relative(ours, reference) < 1e-6


@pytest.mark.parametrize("composite", COMPOSITES)
def test_reference_cnn_equals_zennit_with_merged_batchnorm(composite):
    """The bench's reference CNN (bias-free convolutions before BatchNorm, max-pooling):
    Zennit's SequentialMergeBatchNorm is the canonizer."""
    from zennit.canonizers import SequentialMergeBatchNorm

    from attribkit.bench.reference import ReferenceCNN

    gen = torch.Generator().manual_seed(5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ReferenceCNN().eval().double()
    randomize_batchnorm(model, gen)
    x = torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    targets = torch.tensor([0, 3, 5])
    options = {"low": 0.0, "high": 1.0} if composite == "epsilon_gamma_box" else {}
    ours = ak.explain(model, x, targets, method="lrp", composite=composite, **options).values
    onehot = torch.nn.functional.one_hot(targets, 6).double()
    zcomposite = zennit_composite(composite, [SequentialMergeBatchNorm()], low=0.0, high=1.0)
    with Gradient(model, zcomposite) as attributor:
        _, reference = attributor(x.clone(), lambda out: (onehot * out).detach())
    assert max_relative(ours, reference) < 1e-6


@pytest.mark.parametrize("variant", ["lrp", "lrp.epsilon_gamma_box", "lrp.epsilon_alpha2_beta1",
                                     "lrp.epsilon_plus"])
def test_bench_variants_equal_their_zennit_peers(variant):
    """What ``attribkit bench`` scores and times under each LRP composite's name equals
    the Zennit peer it is timed against (attribkit.bench.peers), default box bounds included."""
    from attribkit.bench.peers import peer
    from attribkit.bench.reference import ReferenceCNN
    from attribkit.bench.runner import bench_method

    gen = torch.Generator().manual_seed(6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ReferenceCNN().eval().double()
    randomize_batchnorm(model, gen)
    x = torch.rand(2, 3, 32, 32, generator=gen, dtype=torch.float64)
    targets = torch.tensor([1, 4])
    spec = bench_method(variant)
    ours = ak.explain(model, x, targets, method=spec).values
    reference = peer(variant, "zennit").call(model, x, targets)
    assert max_relative(ours, reference) < 1e-6
