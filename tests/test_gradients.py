"""Gradient family: equality with Captum and with explicit guided-ReLU reference models."""

import copy
import gc
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import attribkit as ak
from attribkit.bench.peers import LIBRARIES, PEERS, peer
from attribkit.torch.noise import NoiseTunnel, noisy_copies

pytest.importorskip(LIBRARIES["captum"])

BUILT_IN = [s.name for s in ak.methods(family="gradient") if s.plugin == "attribkit.families.gradient"]
WITH_CAPTUM = [m for m in BUILT_IN if any(p.method == m and p.library == "captum" for p in PEERS)]


@pytest.fixture(scope="module", params=["resnet18", "vgg11"])
def tv_model(request):
    torch.manual_seed(0)
    return torchvision.models.get_model(request.param, num_classes=10).double().eval()


@pytest.mark.parametrize("method", WITH_CAPTUM)
def test_equals_captum_on_torchvision_models(tv_model, method):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    targets = [1, 5, 7]
    ours = ak.explain(tv_model, x, targets, method=method).values
    reference = peer(method, "captum").call(tv_model, x, targets)
    assert reference.abs().max() > 0
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-8)


class RefRule(torch.autograd.Function):
    """Reference written independently of attribkit.torch.relu: an explicit
    autograd function for a ReLU whose backward follows the rule."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return torch.where(x > 0, x, torch.zeros_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        positive_grad = torch.where(g > 0, g, torch.zeros_like(g))
        if ctx.rule == "deconvnet":
            return positive_grad, None
        return torch.where(x > 0, positive_grad, torch.zeros_like(g)), None


class RefReLU(nn.Module):
    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, x):
        return RefRule.apply(x, self.rule)


def with_reference_relus(model, rule, functional_too):
    """Copy of a torchvision DenseNet with every nn.ReLU replaced by RefReLU and,
    if ``functional_too``, the functional ReLU of DenseNet.forward as well."""
    ref = copy.deepcopy(model)
    for name, module in list(ref.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, RefReLU(rule))
    final = (lambda t: RefRule.apply(t, rule)) if functional_too else F.relu

    def forward(x):
        out = final(ref.features(x))
        return ref.classifier(torch.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1))

    ref.forward = forward
    return ref


@pytest.fixture(scope="module")
def densenet():
    torch.manual_seed(0)
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16,
                                       num_classes=10).double().eval()


@pytest.mark.parametrize("method, rule", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_densenet_functional_relu_is_covered(densenet, method, rule):
    torch.manual_seed(2)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    targets = [0, 4, 9]
    ours = ak.explain(densenet, x, targets, method=method).values
    captum = peer(method, "captum").call(densenet, x, targets)
    all_relus = with_reference_relus(densenet, rule, functional_too=True)
    modules_only = with_reference_relus(densenet, rule, functional_too=False)
    expected = torch.autograd.grad(all_relus(x.requires_grad_())[range(3), targets].sum(), x)[0]
    captum_like = torch.autograd.grad(modules_only(x)[range(3), targets].sum(), x)[0]
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(captum, captum_like, rtol=0, atol=1e-10)
    assert (ours - captum).abs().max() > 1e-4, "the functional ReLU should make a difference"


class EveryReLU(nn.Module):
    """A reused inplace nn.ReLU module plus each functional spelling of ReLU."""

    def __init__(self, act=None):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, 6, 3, padding=1) for c in (3, 6, 6, 6, 6, 6))
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(6, 4)
        self.act = act

    def forward(self, x):
        a = self.act
        x = a(self.convs[0](x)) if a else self.relu(self.convs[0](x))
        x = a(self.convs[1](x)) if a else self.relu(self.convs[1](x))      # module reused
        x = a(self.convs[2](x)) if a else F.relu(self.convs[2](x), inplace=True)
        x = a(self.convs[3](x)) if a else torch.relu(self.convs[3](x))
        x = a(self.convs[4](x)) if a else self.convs[4](x).relu_()
        y = self.convs[5](x)
        y = a(y) if a else F.relu_(y)
        return self.head(y.mean((2, 3)))


@pytest.mark.parametrize("method, rule", [("guided_backprop", "guided"), ("deconvnet", "deconvnet")])
def test_every_relu_spelling_and_reused_modules(method, rule):
    torch.manual_seed(3)
    model = EveryReLU().double().eval()
    ref = copy.deepcopy(model)
    ref.act = lambda t: RefRule.apply(t, rule)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ours = ak.explain(model, x, [1, 3], method=method).values
    expected = torch.autograd.grad(ref(x.requires_grad_())[[0, 1], [1, 3]].sum(), x)[0]
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    plain = ak.explain(model, x.detach(), [1, 3], method="saliency", abs=False).values
    assert (ours - plain).abs().max() > 1e-6


def test_noise_tunnel_equals_a_brute_force_loop(tiny_cnn, images):
    tunnel = NoiseTunnel("smoothgrad", n_samples=6, stdev=0.2, seed=7)
    noisy = noisy_copies(images, tunnel)
    ranges = images.flatten(1).amax(1) - images.flatten(1).amin(1)
    spread = (noisy.reshape(4, 6, -1) - images.reshape(4, 1, -1)).std((1, 2))
    torch.testing.assert_close(spread, 0.2 * ranges, rtol=0.15, atol=0)
    targets = [0, 1, 2, 3]
    maps = []
    for j in range(len(noisy)):
        xj = noisy[j:j + 1].clone().requires_grad_()
        maps.append(torch.autograd.grad(tiny_cnn(xj)[0, targets[j // 6]], xj)[0])
    maps = torch.cat(maps).reshape(4, 6, 3, 12, 12)
    expected = {"smoothgrad": maps.mean(1), "smoothgrad_sq": (maps**2).mean(1),
                "vargrad": maps.var(1, unbiased=False)}
    for kind, want in expected.items():
        r = ak.explain(tiny_cnn, images, targets, method="saliency", abs=False, batch_size=5,
                       noise_tunnel=NoiseTunnel(kind, n_samples=6, stdev=0.2, seed=7))
        torch.testing.assert_close(r.values, want, rtol=1e-4, atol=1e-6)
        assert r.target.tolist() == targets and r.meta["noise_tunnel"]["kind"] == kind
    sg = ak.explain(tiny_cnn, images, targets, method="smoothgrad", abs=False, n_samples=6,
                    stdev=0.2, seed=7)
    torch.testing.assert_close(sg.values, expected["smoothgrad"], rtol=1e-4, atol=1e-6)


def test_noise_tunnel_explains_the_clean_top_class(tiny_cnn, images):
    top = tiny_cnn(images).argmax(1)
    r = ak.explain(tiny_cnn, images, method="input_x_gradient", noise_tunnel="smoothgrad")
    assert torch.equal(r.target, top)
    with pytest.raises(ak.InvalidOptionError, match="noise tunnel kind 'blur'"):
        ak.explain(tiny_cnn, images, method="saliency", noise_tunnel="blur")


def live_tensors():
    gc.collect()
    with warnings.catch_warnings():  # isinstance() pokes deprecated torch.distributed aliases
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


@pytest.mark.parametrize("method", BUILT_IN)
def test_repeated_calls_do_not_grow_memory(tiny_cnn, images, method):
    ak.explain(tiny_cnn, images, method=method)
    before = live_tensors()
    for _ in range(100):
        ak.explain(tiny_cnn, images, method=method, batch_size=3)
    assert live_tensors() == before
