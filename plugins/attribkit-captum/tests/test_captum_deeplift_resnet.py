"""Captum's DeepLift family on torchvision ResNets (issue 13).

A ResNet block calls one ``ReLU(inplace=True)`` module twice, which Captum's
DeepLift cannot handle; attribkit explains a private copy with one module per
call. The reference is Captum's own DeepLift on an equivalent model built here
(blocks with one non-inplace ReLU per use, the same weights); the independent
check is DeepLift's completeness: the attributions of an image sum to
``f(x) - f(baseline)`` for its target (the mean over the baselines for the SHAP
forms), at the input and at a layer every path goes through.

Captum's rule for max-pooling is complete only where the input and the baseline
pool the same positions (true for the zero baseline, not for a blurred copy:
Captum alone misses by ~0.08 on these ResNets), so completeness is checked on
the same ResNets without the stem's max-pool; it still calls every block's ReLU
two or three times.
"""

import contextlib
import threading

import captum.attr as A
import pytest
import torch
import torchvision.models.resnet as R
from torch import nn

import attribkit as ak
from attribkit.errors import InputError, LayerError, TargetError
from attribkit.testing import RaiseOnCall, assert_model_untouched
from attribkit_captum import callsites
from attribkit_captum.defaults import gaussian_blur

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

TARGETS = torch.tensor([3, 7])
METHODS = ("captum.deeplift", "captum.deeplift_shap", "captum.layer_deeplift",
           "captum.layer_deeplift_shap")


class OneReluPerUseBasic(R.BasicBlock):
    """torchvision's BasicBlock with its own non-inplace ReLU for each of its two uses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.relu
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + identity)


class OneReluPerUseBottleneck(R.Bottleneck):
    """torchvision's Bottleneck with its own non-inplace ReLU for each of its three uses."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.relu
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu2(self.bn2(self.conv2(out)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + identity)


ARCHITECTURES = {
    "resnet18": (R.BasicBlock, OneReluPerUseBasic, [2, 2, 2, 2]),
    "bottleneck": (R.Bottleneck, OneReluPerUseBottleneck, [1, 1, 1, 1]),
}


def resnet(block, layers, seed=0):
    """A float64 ResNet in eval mode, random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = R.ResNet(block, layers, num_classes=10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.double().eval()


def equivalent(model, block, layers):
    """The same function with one non-inplace ReLU per use (stem and blocks), same weights."""
    twin = R.ResNet(block, layers, num_classes=10)
    twin.relu = nn.ReLU()
    twin.load_state_dict(model.state_dict())
    return twin.double().eval()


def as_users_have_it(model):
    """Training mode, a frozen stem, a stale gradient, user hooks (one on a reused ReLU)."""
    model.train()
    model.conv1.weight.requires_grad_(False)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    model.layer1[0].relu.register_forward_hook(lambda m, i, o: None)
    model.fc.register_full_backward_hook(lambda m, gi, go: None)
    return model


def structure(model):
    """What assert_model_untouched does not look at: module objects, types, names,
    inplace flags and attribute names."""
    return [(name, id(m), type(m), getattr(m, "inplace", None), sorted(vars(m)))
            for name, m in model.named_modules()]


@contextlib.contextmanager
def untouched(model):
    """assert_model_untouched plus the module structure (inplace flags included)."""
    before = structure(model)
    with assert_model_untouched(model):
        yield
    assert structure(model) == before


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64, dtype=torch.float64)


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def nets(request):
    """(the user's model as users have it, its one-ReLU-per-use equivalent, the name)."""
    block, reference_block, layers = ARCHITECTURES[request.param]
    model = resnet(block, layers)
    return as_users_have_it(model), equivalent(model, reference_block, layers), request.param


def shap_baselines(xi):
    return torch.cat([torch.zeros_like(xi), gaussian_blur(xi)])


def reference(method, ref, x, targets):
    """Captum's own method on the one-ReLU-per-use model, with the adapter's defaults
    (zero baselines; per image, zeros and a blurred copy for the SHAP forms)."""
    if method == "captum.deeplift":
        return A.DeepLift(ref).attribute(x, target=targets)
    if method == "captum.layer_deeplift":
        return A.LayerDeepLift(ref, ref.layer3).attribute(x, target=targets)
    per_image = []
    for i in range(len(x)):
        xi, ti = x[i:i + 1], targets[i:i + 1]
        explainer = A.DeepLiftShap(ref) if method == "captum.deeplift_shap" else \
            A.LayerDeepLiftShap(ref, ref.layer3)
        per_image.append(explainer.attribute(xi, baselines=shap_baselines(xi), target=ti))
    return torch.cat(per_image)


def expected_total(method, model, x, targets):
    """Completeness: f(x) - f(baseline) for each image's target (mean over the SHAP baselines)."""
    totals = []
    with torch.no_grad():
        for i, t in enumerate(targets.tolist()):
            xi = x[i:i + 1]
            base = shap_baselines(xi) if method.endswith("_shap") else torch.zeros_like(xi)
            totals.append(model(xi)[0, t] - model(base)[:, t].mean())
    return torch.stack(totals)


def explain(model, x, method, **kwargs):
    layer = {"layer": model.layer3} if "layer_" in method else {}
    return ak.explain(model, x, TARGETS, method=method, **layer, **kwargs)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_captum_alone_fails_on_a_resnet(name, images):
    """The issue itself: Captum's DeepLift on the unmodified model."""
    block, _, layers = ARCHITECTURES[name]
    with pytest.raises(RuntimeError, match="being used more than once"):
        A.DeepLift(resnet(block, layers)).attribute(images, target=TARGETS)


@pytest.mark.parametrize("method", METHODS)
def test_equals_captum_on_the_one_relu_per_use_model(nets, images, method):
    model, ref, _ = nets
    with untouched(model):
        result = explain(model, images, method)
    expected = reference(method, ref, images, TARGETS)
    assert result.values.shape == expected.shape
    torch.testing.assert_close(result.values, expected.detach(), rtol=0, atol=1e-8)
    assert torch.equal(result.target, TARGETS)
    assert result.layer == ("layer3" if "layer_" in method else None)


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def unpooled(request):
    """The architecture's ResNet (eval mode) without the stem's max-pool."""
    block, _, layers = ARCHITECTURES[request.param]
    model = resnet(block, layers, seed=2)
    model.maxpool = nn.Identity()
    return model


@pytest.mark.parametrize("method", METHODS)
def test_completeness(unpooled, method):
    torch.manual_seed(3)
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expected = expected_total(method, unpooled, images, TARGETS)
    with untouched(unpooled):
        totals = explain(unpooled, images, method).values.flatten(1).sum(1)
    torch.testing.assert_close(totals, expected, rtol=0, atol=1e-8)


def test_chunks_and_layer_names_give_the_same_maps(nets, images):
    model, _, _ = nets
    whole = explain(model, images, "captum.deeplift").values
    with untouched(model):
        chunked = explain(model, images, "captum.deeplift", batch_size=1).values
        by_name = ak.explain(model, images, TARGETS, method="captum.layer_deeplift",
                             layer="layer3").values
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-10)
    torch.testing.assert_close(by_name, explain(model, images, "captum.layer_deeplift").values,
                               rtol=0, atol=0)


def test_callable_target_is_complete(nets, images):
    model, ref, _ = nets
    diff = lambda s: s[:, 3] - s[:, 7]  # noqa: E731
    with untouched(model):
        result = ak.explain(model, images, diff, method="captum.deeplift")
    with torch.no_grad():
        expected = diff(ref(images)) - diff(ref(torch.zeros_like(images)))
    torch.testing.assert_close(result.values.flatten(1).sum(1), expected, rtol=0, atol=1e-8)


def test_user_model_untouched_when_something_fails(nets, images):
    model, _, _ = nets
    with untouched(model), pytest.raises(TargetError, match="out of range"):
        ak.explain(model, images, 99, method="captum.deeplift")
    with untouched(model), pytest.raises(LayerError, match="'layer1.0.relu'.*called [23] times"):
        ak.explain(model, images, 0, method="captum.layer_deeplift", layer="layer1.0.relu")
    raising = RaiseOnCall(model, 2)
    with untouched(raising), pytest.raises(RuntimeError, match="boom in forward") as raised:
        ak.explain(raising, images, 0, method="captum.deeplift_shap")
    assert any("/captum/" in str(frame.path) for frame in raised.traceback)


def test_the_copy_shares_the_weights_and_splits_only_reused_modules(images):
    model = resnet(R.BasicBlock, [1, 1, 1, 1])
    twin = callsites.private_copy(model, "captum.deeplift")
    assert twin.conv1.weight is model.conv1.weight
    assert twin.bn1.running_mean is model.bn1.running_mean
    assert model.relu.inplace and not twin.relu.inplace
    with callsites.call_counts(twin) as counts, torch.no_grad():
        twin(images)
    callsites.split_reused(twin, counts, None, "captum.deeplift")
    assert isinstance(twin.layer1[0].relu, callsites.CallSites)
    assert len(twin.layer1[0].relu.sites) == 2
    assert type(twin.relu) is nn.ReLU          # the stem's ReLU is called once
    with torch.no_grad():
        torch.testing.assert_close(twin(images), model(images), rtol=0, atol=0)


def test_concurrent_calls_on_one_model_are_unaffected(images):
    """DeepLift calls (each on its own copy) beside Captum methods that hook the model itself."""
    model = resnet(R.BasicBlock, [1, 1, 1, 1])
    methods = ["captum.deeplift", "captum.guided_backprop"] * 2
    alone = {m: ak.explain(model, images, TARGETS, method=m).values for m in set(methods)}
    results, errors = {}, []

    def work(i):
        try:
            results[i] = ak.explain(model, images, TARGETS, method=methods[i]).values
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(methods))]
    with untouched(model):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    for i, method in enumerate(methods):
        assert torch.equal(results[i], alone[method]), method


class Unsteady(nn.Module):
    """Calls one ReLU twice for a single image and ``calls`` times otherwise (not static)."""

    def __init__(self, calls):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)
        self.calls = calls

    def forward(self, x):
        for _ in range(2 if len(x) == 1 else self.calls):
            x = self.relu(self.conv(x) if x.shape[1] == 3 else x)
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("calls", [1, 3])
def test_a_forward_with_other_calls_than_the_probe_is_refused(calls):
    model = Unsteady(calls)
    with untouched(model), pytest.raises(InputError, match="'relu'.*static graph"):
        ak.explain(model, torch.randn(1, 3, 8, 8), 0, method="captum.deeplift")
