"""Ablation-CAM: the expanded path and its fallback.

Ablation-CAM runs each image alone with the layer's output replaced by a check row and
up to K - 1 ablated copies (only the part after the layer sees K rows; later forwards
of an image replay the part before it), and falls back to full forwards of the whole
model when that cannot be trusted (attribkit.torch.cam's docstring). `paths` records
which path each call took; `full_path` forces the fallback.
"""

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import LayerError
from tests.cam_support import Segmenter, Twice, region_score



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
    ours = ak.explain(model, images, region_score, method="ablationcam", layer="body.1",
                      forward_batch_size=4)
    reference = full_path(model, images, region_score, layer="body.1", forward_batch_size=4)
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

