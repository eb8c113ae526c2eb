"""The CAM family: equality with pytorch-grad-cam and Captum, CAM by hand, the
model guarantee, batching, autograd modes, targets, layers and the registry.

Peer references: pytorch-grad-cam 1.5.7 (``pytorch_grad_cam``) and Captum 0.9, on
torchvision resnet18 / vgg11 with random weights in eval mode. pytorch-grad-cam
returns ``minmax(resize(minmax(ReLU(L))))`` (it min-max scales each layer map,
resizes it with cv2 bilinear, then scales again when aggregating layers);
:func:`like_pgc` applies the same steps to our layer maps, using
``Attribution.upsampled()`` for the resize (cv2's INTER_LINEAR on float32 is the
half-pixel bilinear of ``F.interpolate(align_corners=False)`` when upsampling).
"""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import attribkit as ak
from attribkit.errors import GradientModeError, InvalidOptionError, LayerError, TargetError
from attribkit.testing import assert_model_untouched
from attribkit.testing import RaiseOnCall as Raising
from tests.test_guard import prepared_model

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

CAM_METHODS = ["cam", "gradcam", "gradcam_pp", "hirescam", "xgradcam", "layercam", "scorecam",
               "ablationcam", "eigencam", "guided_gradcam"]
GRADIENT_CAMS = ["gradcam", "gradcam_pp", "hirescam", "xgradcam", "layercam"]
FORWARD_ONLY = ["cam", "scorecam", "ablationcam", "eigencam"]
TARGETS = [1, 3, 5, 7]
TOL = 1e-5


def minmax(v):
    """pytorch-grad-cam's per-image scaling: ``x - min``, then ``/ (1e-7 + max)``."""
    v = v - v.amin(dim=(-2, -1), keepdim=True)
    return v / (1e-7 + v.amax(dim=(-2, -1), keepdim=True))


def like_pgc(result):
    """Our ``(B, 1, h, w)`` result post-processed as pytorch-grad-cam does, ``(B, H, W)``."""
    scaled = dataclasses.replace(result, values=minmax(result.values))
    return minmax(scaled.upsampled().clamp(min=0))[:, 0].numpy()


def pgc_run(cls, model, layer, x, targets, *, trainable=None, **attrs):
    """pytorch-grad-cam's result. ``trainable`` names the one parameter left with
    ``requires_grad`` while it runs: its ``loss.backward()`` then skips the weight
    gradients of the rest (the classifier of vgg11 alone has 120M weights); the
    gradient at the layer, and so the result, is the same."""
    frozen = [p for n, p in model.named_parameters() if p.requires_grad and n != trainable]
    try:
        for p in frozen:
            p.requires_grad_(False)
        with cls(model, [layer]) as cam:
            for key, value in attrs.items():
                setattr(cam, key, value)
            return cam(x, [ClassifierOutputTarget(t) for t in targets])
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for p in model.parameters():
            p.grad = None


class SignFixedEigenCAM(pgc.EigenCAM):
    """pytorch-grad-cam's EigenCAM with our orientation of the SVD's arbitrary sign:
    the first principal direction ``v`` has ``sum_k v_k >= 0``, i.e. the projection
    correlates positively with the channel-mean of the centred activations."""

    def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
        projection = super().get_cam_image(input_tensor, target_layer, targets, activations, grads,
                                           eigen_smooth)
        centred = activations - activations.mean(axis=(2, 3), keepdims=True)
        flip = (projection * centred.mean(axis=1)).sum(axis=(1, 2)) < 0
        projection[flip] *= -1
        return projection


PGC_CLASSES = {
    "gradcam": pgc.GradCAM, "gradcam_pp": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
    "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigencam": SignFixedEigenCAM,
    "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM,
}


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def vgg11():
    torch.manual_seed(0)
    return torchvision.models.vgg11(num_classes=10).eval()


# ------------------------------------------------------------ pytorch-grad-cam


# resnet18: layer4 at 64x64 is 2x2; vgg11: the last conv block's ReLU (features.19) at
# 64x64 is 4x4 (features[-1], after the last max-pool, would be 2x2).
NETS = {"resnet18": ("layer4", 64, 2, "layer4.1.conv2.weight"),
        "vgg11": ("features.19", 64, 4, "features.18.weight")}


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("method", GRADIENT_CAMS + ["eigencam"])
def test_equals_pytorch_grad_cam(net, method, request):
    model = request.getfixturevalue(net)
    layer_name, size, side, trainable = NETS[net]
    torch.manual_seed(1)
    x = torch.randn(4, 3, size, size)
    ours = ak.explain(model, x, TARGETS, method=method, layer=layer_name)
    reference = pgc_run(PGC_CLASSES[method], model, model.get_submodule(layer_name), x, TARGETS,
                        trainable=trainable)
    assert ours.values.shape == (4, 1, side, side)
    np.testing.assert_allclose(like_pgc(ours), reference, rtol=0, atol=TOL)
    assert ours.target.tolist() == TARGETS and ours.layer == layer_name


def test_eigencam_projection_equals_pytorch_grad_cam_up_to_the_svd_sign(vgg11):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    torch.manual_seed(1)
    x = torch.randn(4, 3, 64, 64)
    ours = ak.explain(vgg11, x, method="eigencam", layer="features.19", relu=False).values[:, 0]
    acts = vgg11.features[:20](x).detach().numpy()
    reference = get_2d_projection(acts)
    for mine, theirs in zip(ours.numpy(), reference):
        error = min(np.abs(mine - theirs).max(), np.abs(mine + theirs).max())
        assert error <= 1e-4 * np.abs(theirs).max()


# Score-CAM / Ablation-CAM run B*C forwards (twice: ours and the reference). To keep
# the test fast on CPU, resnet18 is explained at layer1 (64 channels, 6x6 maps at
# 24x24 inputs) for 2 images; the small CNN below takes a batch of 4.
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_score_and_ablation_cam_equal_pytorch_grad_cam(method, resnet18):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 24, 24)
    ours = ak.explain(resnet18, x, [3, 7], method=method, layer="layer1", forward_batch_size=48)
    reference = pgc_run(PGC_CLASSES[method], resnet18, resnet18.layer1, x, [3, 7], batch_size=64)
    assert ours.values.shape == (2, 1, 6, 6)
    np.testing.assert_allclose(like_pgc(ours), reference, rtol=0, atol=TOL)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_score_and_ablation_cam_equal_pytorch_grad_cam_on_a_small_cnn(method, tiny_cnn, images):
    targets = [0, 1, 2, 3]
    ours = ak.explain(tiny_cnn, images, targets, method=method, layer="features.2")
    reference = pgc_run(PGC_CLASSES[method], tiny_cnn, tiny_cnn.features[2], images, targets)
    np.testing.assert_allclose(like_pgc(ours), reference, rtol=0, atol=TOL)


# ------------------------------------------- Ablation-CAM: expanded path and fallback
#
# Ablation-CAM runs each image alone with the layer's output replaced by a check row and
# up to K - 1 ablated copies (only the part after the layer sees K rows; later forwards
# of an image replay the part before it), and falls back to full forwards of the whole
# model when that cannot be trusted (attribkit.torch.cam's docstring). `paths` records
# which path each call took; `full_path` forces the fallback.


@pytest.fixture
def paths(monkeypatch):
    from attribkit.torch import ablation as kernels

    taken = []
    expanded = kernels.ablation_scores_expanded

    def spy(*args, **kwargs):
        result = expanded(*args, **kwargs)
        taken.append("full" if result is None else "expanded")
        return result

    monkeypatch.setattr(kernels, "ablation_scores_expanded", spy)
    return taken


def full_path(model, x, targets, **options):
    """Ablation-CAM through the full-forward path only (the implementation before the
    expanded path existed)."""
    from attribkit.torch import ablation as kernels

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "ablation_scores_expanded", lambda *a, **k: None)
        return ak.explain(model, x, targets, method="ablationcam", **options)


def ablation_by_hand(acts, after, targets, value=0.0):
    """Reference weights-and-map from first principles: ``after(A)`` is the model's
    output computed from the layer's activations, one image at a time."""
    maps = []
    for a, t in zip(acts, targets):
        base = after(a[None])[0, t]
        weights = []
        for k in range(a.shape[0]):
            ablated = a.clone()
            ablated[k] = value
            weights.append((base - after(ablated[None])[0, t]) / base)
        maps.append((torch.stack(weights)[:, None, None] * a).sum(0, keepdim=True).clamp(min=0))
    return torch.stack(maps)


class Dense(nn.Module):
    """DenseNet-style: the layer's output is concatenated with a tensor computed before
    it, which has one row in the expanded path: ``torch.cat`` raises, so it falls back."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.grow = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(10, 5)

    def forward(self, x):
        h = self.stem(x)
        return self.fc(torch.cat([h, self.grow(h)], 1).mean((2, 3)))


class FirstRows(nn.Module):
    """Keeps as many output rows as it has inputs: right when the whole model runs on
    the ablated rows, but one row in the expanded path (not K): it falls back."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))[:len(x)]


class BatchCentred(FirstRows):
    """Returns scores minus their batch mean: a per-batch statistic, so K rows of one
    image do not reproduce the original score of the un-ablated row: it falls back."""

    def forward(self, x):
        s = self.fc(self.body(x).mean((2, 3)))
        return s - s.mean(0, keepdim=True)


RESNET_LAYERS = ["layer4", "layer4.0.conv1", "layer4.0.bn2", "layer3.1"]


@pytest.mark.parametrize("layer", RESNET_LAYERS)
def test_ablationcam_expanded_path_equals_full_path_on_resnet18(layer, resnet18, paths):
    """layer4: the head only; layer4.0.conv1 / bn2: inside a block, the residual
    ``out += identity`` adds a pre-layer tensor of one row to the K ablated rows
    (layer4.0's identity also goes through its downsample); layer3.1: a whole block
    followed by layer4."""
    torch.manual_seed(9)
    x = torch.randn(2, 3, 32, 32)
    ours = ak.explain(resnet18, x, [3, 7], method="ablationcam", layer=layer,
                      forward_batch_size=200)
    assert paths == ["expanded"]
    reference = full_path(resnet18, x, [3, 7], layer=layer, forward_batch_size=200)
    torch.testing.assert_close(ours.values, reference.values, rtol=1e-4, atol=1e-5)
    assert bool((ours.values > 0).any())


@pytest.mark.parametrize("layer", ["features", "features.2", "features.3"])
@pytest.mark.parametrize("step", [1, 5, 17, 1000])
def test_ablationcam_expanded_path_equals_full_path_on_tiny_cnn(layer, step, tiny_cnn, images,
                                                              paths):
    ours = ak.explain(tiny_cnn, images, [0, 1, 2, 3], method="ablationcam", layer=layer,
                      forward_batch_size=step)
    assert paths == ["full" if step == 1 else "expanded"]  # no room for a check row in 1
    reference = full_path(tiny_cnn, images, [0, 1, 2, 3], layer=layer, forward_batch_size=step)
    torch.testing.assert_close(ours.values, reference.values, rtol=1e-5, atol=1e-6)
    acts = tiny_cnn.features(images).detach()
    if layer == "features":
        by_hand = ablation_by_hand(acts, lambda a: tiny_cnn.fc(a.mean((2, 3))), [0, 1, 2, 3])
        torch.testing.assert_close(ours.values, by_hand, rtol=1e-5, atol=1e-6)


def test_ablationcam_callable_target_takes_the_expanded_path(images, paths):
    torch.manual_seed(7)
    model = Segmenter().eval()
    ours = ak.explain(model, images, _region_score, method="ablationcam", layer="body.1",
                      forward_batch_size=4)
    reference = full_path(model, images, _region_score, layer="body.1", forward_batch_size=4)
    assert paths == ["expanded"]
    torch.testing.assert_close(ours.values, reference.values, rtol=1e-5, atol=1e-6)


def test_ablationcam_expanded_path_runs_the_part_before_the_layer_once_per_image(
        resnet18, monkeypatch):
    """After the first forward on the batch, the stem and the layer itself compute once
    per image, on that image alone (later forwards replay them); the head sees
    ceil(512 / 99) = 6 forwards per image of at most ``forward_batch_size`` rows, each a
    check row and up to 99 ablated copies."""
    computed = {"conv1": [], "layer4.1.conv2": []}
    modules = {resnet18.get_submodule(name): name for name in computed}
    conv_forward = nn.Conv2d.forward

    def counting(self, x):
        if self in modules:
            computed[modules[self]].append(len(x))
        return conv_forward(self, x)

    monkeypatch.setattr(nn.Conv2d, "forward", counting)
    head = []
    hook = resnet18.fc.register_forward_hook(lambda m, args, out: head.append(len(args[0])))
    try:
        ak.explain(resnet18, torch.randn(2, 3, 32, 32), [1, 2], method="ablationcam",
                   layer="layer4", forward_batch_size=100)
    finally:
        hook.remove()
    assert computed == {"conv1": [2, 1, 1], "layer4.1.conv2": [2, 1, 1]}
    assert head == [2] + [100, 100, 100, 100, 100, 18] * 2
    assert not any("forward" in vars(m) for m in resnet18.modules())


@pytest.mark.parametrize("cls", [Dense, FirstRows, BatchCentred])
def test_ablationcam_falls_back_to_full_forwards(cls, images, paths):
    torch.manual_seed(10)
    model = cls().eval()
    layer = "grow" if cls is Dense else "body"
    targets = [0, 1, 2, 3]
    ours = ak.explain(model, images, targets, method="ablationcam", layer=layer,
                      forward_batch_size=4)
    assert paths == ["full"]
    reference = full_path(model, images, targets, layer=layer, forward_batch_size=4)
    torch.testing.assert_close(ours.values, reference.values)
    if cls is Dense:
        h = model.stem(images).detach()
        acts = model.grow(h).detach()
        by_hand = torch.stack([
            ablation_by_hand(a[None], lambda a, i=i: model.fc(torch.cat([h[i:i + 1], a], 1)
                                                              .mean((2, 3))), [t])[0]
            for i, (a, t) in enumerate(zip(acts, targets))])
        torch.testing.assert_close(ours.values, by_hand, rtol=1e-5, atol=1e-6)
    if cls is FirstRows:
        acts = model.body(images).detach()
        by_hand = ablation_by_hand(acts, lambda a: model.fc(a.mean((2, 3))), targets)
        torch.testing.assert_close(ours.values, by_hand, rtol=1e-5, atol=1e-6)


def test_ablationcam_layer_called_twice_is_expanded_at_its_last_call(images, paths):
    torch.manual_seed(8)
    twice = Twice().eval()
    ours = ak.explain(twice, images, [0, 1, 2, 3], method="ablationcam", layer="block",
                      forward_batch_size=4)
    assert paths == ["expanded"]
    reference = full_path(twice, images, [0, 1, 2, 3], layer="block", forward_batch_size=4)
    torch.testing.assert_close(ours.values, reference.values)
    h = twice.block(twice.stem(images)).detach()
    by_hand = ablation_by_hand(twice.block(h).detach(), lambda a: twice.fc(a.mean((2, 3))),
                               [0, 1, 2, 3])
    torch.testing.assert_close(ours.values, by_hand, rtol=1e-5, atol=1e-6)


class SideEffect(nn.Module):
    """Applies an in-place ReLU for its side effect only, to a tensor added after the
    layer: replaying the ReLU's recorded output does not redo the side effect, the check
    row's score differs, so the replay is abandoned (the result stays right)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.body = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        h = self.stem(x)
        self.act(h)
        return self.fc((self.body(h) + h).mean((2, 3)))


class Flaky(FirstRows):
    """Raises in its third forward: the first replayed one of the first image."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def forward(self, x):
        self.count += 1
        h = self.body(x)
        if self.count == 3:
            raise RuntimeError("flaky")
        return self.fc(h.mean((2, 3)))


def test_ablationcam_replay_that_changes_the_check_row_is_abandoned(images, paths):
    torch.manual_seed(11)
    model = SideEffect().eval()
    ours = ak.explain(model, images, [0, 1, 2, 3], method="ablationcam", layer="body",
                      forward_batch_size=4)
    assert paths == ["expanded"]
    h = model.stem(images).relu().detach()
    by_hand = torch.stack([
        ablation_by_hand(a[None], lambda a, i=i: model.fc((a + h[i:i + 1]).mean((2, 3))), [t])[0]
        for i, (a, t) in enumerate(zip(model.body(h).detach(), [0, 1, 2, 3]))])
    torch.testing.assert_close(ours.values, by_hand, rtol=1e-5, atol=1e-6)


def test_ablationcam_replay_restores_forward_even_when_the_model_raises(images, paths):
    torch.manual_seed(12)
    model = Flaky().eval()
    own = model.body.forward  # an instance attribute of the user's: must survive
    model.body.forward = own
    ours = ak.explain(model, images, [0, 1, 2, 3], method="ablationcam", layer="body.0",
                      forward_batch_size=4)
    assert paths == ["expanded"] and model.count > 3
    assert vars(model.body)["forward"] is own
    assert not any("forward" in vars(m) for m in model.modules() if m is not model.body)
    acts = model.body[0](images).detach()
    by_hand = ablation_by_hand(acts, lambda a: model.fc(a.relu().mean((2, 3))), [0, 1, 2, 3])
    torch.testing.assert_close(ours.values, by_hand, rtol=1e-5, atol=1e-6)


class BatchDependentCalls(nn.Module):
    """Calls ``block`` once per image, up to twice: the number of calls depends on the
    batch size."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(3, 5)

    def forward(self, x):
        for _ in range(min(len(x), 2)):
            x = self.block(x)
        return self.fc(x.mean((2, 3)))


def test_ablationcam_refuses_a_layer_called_a_batch_dependent_number_of_times(images, paths):
    model = BatchDependentCalls().eval()
    # batches of one image call the layer once, the first forward (4 images) twice: the
    # expanded path is refused, and so are full forwards of one row
    with pytest.raises(LayerError, match="ran 1 time.*but 2 in the first"):
        ak.explain(model, images, method="ablationcam", layer="block", forward_batch_size=1)
    assert paths == ["full"]


# --------------------------------------------------------------------- Captum


class Float64:
    """A float64 copy of a model (cached), for tight comparisons."""

    _cache: dict[int, nn.Module] = {}

    @classmethod
    def of(cls, model):
        key = id(model)
        if key not in cls._cache:
            import copy
            cls._cache[key] = copy.deepcopy(model).double().eval()
        return cls._cache[key]


@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer4.1.bn2", "layer4.1.relu"])
def test_gradcam_equals_captum_layer_gradcam(layer, resnet18):
    from captum.attr import LayerGradCam

    model = Float64.of(resnet18)
    torch.manual_seed(3)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    reference = LayerGradCam(model, model.get_submodule(layer)).attribute(
        x, [4, 9], relu_attributions=True)
    ours = ak.explain(model, x, [4, 9], method="gradcam", layer=layer)
    torch.testing.assert_close(ours.values, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_gradcam_equals_captum(mode, resnet18):
    from captum.attr import GuidedGradCam

    model = Float64.of(resnet18)
    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with pytest.warns(UserWarning):  # Captum's notes about requires_grad and ReLU hooks
        reference = GuidedGradCam(model, model.layer4).attribute(x, [2, 8], interpolate_mode=mode)
    ours = ak.explain(model, x, [2, 8], method="guided_gradcam", layer="layer4",
                      interpolate_mode=mode)
    assert ours.values.shape == x.shape and ours.layer == "layer4"
    torch.testing.assert_close(ours.values, reference, rtol=0, atol=1e-12)


# ----------------------------------------------------------------- CAM by hand


def test_cam_is_the_classifier_weighted_sum_of_activations(tiny_cnn, images):
    targets = [4, 0, 2, 1]
    acts = tiny_cnn.features(images)
    raw = torch.einsum("bk,bkhw->bhw", tiny_cnn.fc.weight[targets], acts)[:, None].detach()
    ours = ak.explain(tiny_cnn, images, targets, method="cam")
    assert ours.layer == "features"
    torch.testing.assert_close(ours.values, raw.clamp(min=0))
    signed = ak.explain(tiny_cnn, images, targets, method="cam", relu=False)
    torch.testing.assert_close(signed.values, raw)
    # for a GAP + linear head, Grad-CAM (no ReLU) is CAM / (h * w)
    grad = ak.explain(tiny_cnn, images, targets, method="gradcam", layer="features", relu=False)
    torch.testing.assert_close(grad.values * 12 * 12, raw, rtol=1e-4, atol=1e-5)


def test_cam_finds_the_classifier_of_resnet18(resnet18):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 64, 64)
    acts = resnet18.layer4(resnet18.layer3(resnet18.layer2(resnet18.layer1(
        resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(x))))))))
    ours = ak.explain(resnet18, x, [3, 6], method="cam", relu=False)
    expected = torch.einsum("bk,bkhw->bhw", resnet18.fc.weight[[3, 6]], acts)[:, None].detach()
    assert ours.layer == "layer4"
    torch.testing.assert_close(ours.values, expected, rtol=1e-5, atol=1e-5)


def test_cam_refuses_models_without_a_gap_linear_head(vgg11, tiny_cnn, images):
    with pytest.raises(LayerError, match="global average pooling.*no nn.Linear with in_features=512"):
        ak.explain(vgg11, torch.randn(1, 3, 64, 64), method="cam", layer="features")
    with pytest.raises(LayerError, match="no nn.Linear with in_features=8"):
        ak.explain(tiny_cnn, images, method="cam", layer="features.2")
    max_pooled = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                               nn.Linear(4, 3))
    with pytest.raises(LayerError, match="not the spatial mean"):
        ak.explain(max_pooled, images, method="cam", layer="1")
    softmaxed = nn.Sequential(*max_pooled[:2], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 3), nn.Softmax(dim=1))
    with pytest.raises(LayerError, match="not the model's output"):
        ak.explain(softmaxed, images, method="cam", layer="1")
    with pytest.raises(TargetError, match="no class indices"):
        ak.explain(tiny_cnn, images, lambda s: s[:, 0], method="cam")


# --------------------------------------------------------- the model guarantee


@pytest.mark.parametrize("method", CAM_METHODS)
def test_normal_run_leaves_the_model_untouched(method, images):
    model = prepared_model()
    with assert_model_untouched(model):
        r = ak.explain(model, images, method=method)
    assert model.training and not model.features[0].weight.requires_grad
    assert r.layer == "features" and r.method == method


@pytest.mark.parametrize("method", CAM_METHODS)
def test_out_of_range_target_leaves_the_model_untouched(method, images):
    model = prepared_model()
    with assert_model_untouched(model), pytest.raises(TargetError, match="out of range"):
        ak.explain(model, images, 99, method=method)


@pytest.mark.parametrize("method", CAM_METHODS)
def test_raising_model_leaves_the_model_untouched(method, images):
    model = Raising(prepared_model()).train()
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom in forward"):
        ak.explain(model, images, method=method, layer="inner.features")


@pytest.mark.parametrize("method", CAM_METHODS)
def test_batched_equals_per_image(method, tiny_cnn):
    torch.manual_seed(6)
    x = torch.randn(5, 3, 12, 12)
    targets = [0, 1, 2, 3, 4]
    whole = ak.explain(tiny_cnn, x, targets, method=method)
    chunked = ak.explain(tiny_cnn, x, targets, method=method, batch_size=2)
    single = ak.explain(tiny_cnn, x, targets, method=method, batch_size=1)
    torch.testing.assert_close(whole.values, single.values, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked.values, single.values, rtol=1e-5, atol=1e-6)
    assert whole.target.tolist() == targets


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_forward_batch_size_does_not_change_the_result(method, tiny_cnn, images):
    small = ak.explain(tiny_cnn, images, method=method, forward_batch_size=5)
    big = ak.explain(tiny_cnn, images, method=method, forward_batch_size=1000)
    torch.testing.assert_close(small.values, big.values)
    with pytest.raises(InvalidOptionError, match="forward_batch_size must be a positive integer"):
        ak.explain(tiny_cnn, images, method=method, forward_batch_size=0)


# ------------------------------------------------------------- autograd modes


@pytest.mark.parametrize("method", CAM_METHODS)
def test_works_inside_no_grad_with_frozen_parameters(method, tiny_cnn, images):
    expected = ak.explain(tiny_cnn, images, method=method).values
    for p in tiny_cnn.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        r = ak.explain(tiny_cnn, images, method=method)
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(r.values, expected)
    assert not any(p.requires_grad for p in tiny_cnn.parameters())


@pytest.mark.parametrize("method", CAM_METHODS)
def test_inference_mode(method, tiny_cnn, images):
    if method in FORWARD_ONLY:
        expected = ak.explain(tiny_cnn, images, method=method).values
        with torch.inference_mode():
            r = ak.explain(tiny_cnn, images, method=method)
        torch.testing.assert_close(r.values, expected)
    else:
        with torch.inference_mode(), pytest.raises(GradientModeError, match="inference_mode"):
            ak.explain(tiny_cnn, images, method=method)


@pytest.mark.parametrize("method", GRADIENT_CAMS)
def test_gradient_cams_record_no_graph_before_the_layer(method, tiny_cnn, images):
    """Only the part after the layer is differentiated: the input is never reached."""
    seen = {}

    def before(module, args, output):
        seen["before"] = torch.is_grad_enabled() or output.requires_grad

    def after(module, args, output):
        seen["after"] = output.requires_grad

    hooks = [tiny_cnn.features[0].register_forward_hook(before),
             tiny_cnn.fc.register_forward_hook(after)]
    try:
        ak.explain(tiny_cnn, images, method=method, layer="features.2")
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"before": False, "after": True}


# -------------------------------------------------------- targets and layers


class Segmenter(nn.Module):
    """A fully convolutional model: per-pixel scores for 3 classes, (B, 3, H, W)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return self.head(self.body(x))


def _region_score(scores):
    return scores[:, 1, 2:6, 2:6].sum(dim=(1, 2))


@pytest.mark.parametrize("method", GRADIENT_CAMS + ["scorecam", "ablationcam"])
def test_callable_target_on_a_segmentation_model(method, images):
    torch.manual_seed(7)
    model = Segmenter().eval()
    r = ak.explain(model, images, _region_score, method=method, layer="body")
    assert r.target is None and r.values.shape == (4, 1, 12, 12)
    acts = model.body(images)
    if method in GRADIENT_CAMS:  # reference: the full graph, differentiated at the layer
        grads, = torch.autograd.grad(_region_score(model.head(acts)).sum(), acts)
        from attribkit.torch.cam import GRADIENT_WEIGHTINGS
        weights = GRADIENT_WEIGHTINGS[method](acts.detach(), grads)
        expected = (weights * acts.detach()).sum(1, keepdim=True).clamp(min=0)
        torch.testing.assert_close(r.values, expected, rtol=1e-5, atol=1e-6)
    assert bool((r.values >= 0).all()) and bool((r.values > 0).any())


def test_callable_target_equals_the_class_target(tiny_cnn, images):
    for method in GRADIENT_CAMS + ["scorecam", "ablationcam"]:
        by_class = ak.explain(tiny_cnn, images, 2, method=method)
        by_callable = ak.explain(tiny_cnn, images, lambda s: s[:, 2], method=method)
        torch.testing.assert_close(by_callable.values, by_class.values)


def test_auto_layer_on_resnet18_is_layer4(resnet18):
    r = ak.explain(resnet18, torch.randn(2, 3, 64, 64), method="gradcam")
    assert r.layer == "layer4" and r.values.shape == (2, 1, 2, 2)
    assert r.upsampled().shape == (2, 1, 64, 64)


class Twice(nn.Module):
    """Calls ``block`` twice; ``Unrolled`` is the same network with two modules."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.block(self.block(self.stem(x))).mean((2, 3)))


class Unrolled(nn.Module):
    def __init__(self, twice):
        super().__init__()
        self.stem, self.first, self.second, self.fc = twice.stem, twice.block, \
            nn.Sequential(*twice.block), twice.fc

    def forward(self, x):
        return self.fc(self.second(self.first(self.stem(x))).mean((2, 3)))


@pytest.mark.parametrize("method", CAM_METHODS)
def test_a_layer_called_twice_is_explained_at_its_last_call(method, images):
    torch.manual_seed(8)
    twice = Twice().eval()
    ours = ak.explain(twice, images, [0, 1, 2, 3], method=method, layer="block")
    reference = ak.explain(Unrolled(twice), images, [0, 1, 2, 3], method=method, layer="second")
    torch.testing.assert_close(ours.values, reference.values)


class Detour(nn.Module):
    """``unused`` is a submodule that the forward never calls."""

    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.used(x).mean((2, 3))


def test_layer_errors(tiny_cnn, images):
    with pytest.raises(LayerError, match=r"\(B, C, h, w\) tensor; layer Linear returned \(4, 5\)"):
        ak.explain(tiny_cnn, images, method="gradcam", layer="fc")
    model = Detour()
    for method in ("gradcam", "scorecam"):
        with pytest.raises(LayerError, match="was not called"):
            ak.explain(model, images, method=method, layer="unused")
    with pytest.raises(LayerError, match="does not depend on the output"):
        ak.explain(tiny_cnn, images, lambda s: torch.ones(len(s), requires_grad=True),
                   method="gradcam")
    with pytest.raises(InvalidOptionError, match="interpolate_mode"):
        ak.explain(tiny_cnn, images, method="guided_gradcam", interpolate_mode="cubic")


# ------------------------------------------------------------------ registry


def test_registry_describes_every_cam_method():
    expected_aliases = {"gradcam_pp": {"gradcampp", "grad_cam_plus_plus"},
                        "gradcam": {"grad_cam"}, "scorecam": {"score_cam"}}
    for name in CAM_METHODS:
        spec = ak.get_method(name)
        assert spec.family == "cam" and "layer" in spec.needs and spec.plugin == "attribkit.families.cam"
        module = "ablation" if name == "ablationcam" else "cam"
        assert spec.reference and spec.factory == f"attribkit.torch.{module}:{name}"
        assert spec.output == ("pixel" if name == "guided_gradcam" else "layer")
        assert spec.sign == ("signed" if name == "guided_gradcam" else "non-negative")
        assert expected_aliases.get(name, set()) <= set(spec.aliases)
        for alias in spec.aliases:
            assert ak.get_method(alias) is spec
        assert callable(spec.load())
    assert "autograd" not in ak.get_method("scorecam").needs
    assert ak.get_method("Grad-CAM") is ak.get_method("gradcam")


def test_the_family_module_does_not_import_torch():
    code = ("import sys, attribkit.families.cam as f; names = [s.name for s in f.SPECS]; "
            "assert 'torch' not in sys.modules, 'torch imported'; print(len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(CAM_METHODS))
