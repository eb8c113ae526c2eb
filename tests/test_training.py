"""Attribution-guided losses: CAMLoss and RRRLoss (attribkit.training)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attribkit.errors import GradientModeError, InputError, InvalidOptionError, LayerError, TargetError
from attribkit.testing import RaiseOnCall, TinyCNN, assert_model_untouched
from attribkit.training import CAMLoss, LossOutput, RRRLoss, centre_kernel


def _grads(loss: torch.Tensor, model: nn.Module) -> dict[str, torch.Tensor | None]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {n: g for (n, _), g in zip(named, grads)}


class Gate(nn.Module):
    """Multiplies the activations by a fixed spatial 0/1 region: zero outside it."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.region


class GatedCNN(nn.Module):
    """Full-resolution convs whose activations are exactly zero outside ``region``."""

    def __init__(self, region: torch.Tensor, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.gate = Gate(region)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gate(self.features(x)).mean((2, 3)))


# ---------------------------------------------------------------------- CAMLoss


@pytest.mark.parametrize("method", ["gradcam", "cam"])
def test_camloss_gradients_reach_the_parameters(tiny_cnn, images, method):
    loss_fn = CAMLoss(tiny_cnn, layer="features.3", method=method)  # centre kernel
    labels = torch.tensor([0, 1, 2, 3])
    out = loss_fn(images, labels)
    assert isinstance(out, LossOutput)
    assert out.logits.shape == (4, 5) and out.maps.shape == (4, 12, 12)
    assert 0 < out.penalty.item() < 1
    torch.testing.assert_close(out.maps.sum((1, 2)), torch.ones(4))  # unit mass per image
    grads = _grads(out.penalty, tiny_cnn)
    assert grads.pop("fc.bias") is None  # neither CAM nor Grad-CAM depends on the bias
    for name, g in grads.items():
        assert g is not None and g.abs().sum() > 0, name


def test_camloss_is_zero_with_zero_gradient_when_all_mass_is_allowed():
    torch.manual_seed(0)
    region = torch.zeros(10, 10)
    region[2:7, 3:9] = 1
    model = GatedCNN(region).eval()
    x = torch.rand(3, 3, 10, 10)
    with torch.no_grad():
        y = model(x).argmax(1)  # the top class: a CAM with positive mass
    loss_fn = CAMLoss(model, layer="gate", kernel=None)
    out = loss_fn(x, y, allowed=region.bool().expand(3, 10, 10))
    assert (out.maps[:, region == 0] == 0).all()  # the CAM lives inside the region
    assert (out.maps.sum((1, 2)) > 0.99).all()  # and it is not trivially empty
    assert out.penalty.item() == 0
    grads = _grads(out.penalty, model)
    assert all(g is None or g.abs().max() <= 1e-12 for g in grads.values())
    # the same model against a smaller allowed region: positive penalty, real gradients
    smaller = region.clone()
    smaller[:, 6:] = 0
    out = loss_fn(x, y, allowed=smaller)
    assert out.penalty.item() > 0.05
    grads = _grads(out.penalty, model)
    assert all(grads[n].abs().sum() > 0 for n in ("features.0.weight", "features.2.weight", "fc.weight"))


def test_camloss_allowed_everywhere_and_the_kernel(tiny_cnn, images):
    labels = torch.tensor([4, 3, 2, 1])
    out = CAMLoss(tiny_cnn, kernel=None)(images, labels, allowed=torch.ones(12, 12))
    assert out.penalty.item() == 0
    assert all(g is None or g.abs().max() == 0 for g in _grads(out.penalty, tiny_cnn).values())
    # kernel tensor == centre kernel; centre kernel * allowed multiplies
    k = centre_kernel((12, 12))
    a = CAMLoss(tiny_cnn)(images, labels).penalty
    b = CAMLoss(tiny_cnn, kernel=k)(images, labels).penalty
    torch.testing.assert_close(a, b)
    half = torch.zeros(12, 12)
    half[:, :6] = 1
    c = CAMLoss(tiny_cnn)(images, labels, allowed=half)
    torch.testing.assert_close(c.penalty, (c.maps * k * (1 - half)).sum((1, 2)).mean())
    assert c.penalty < a


def test_relu_mass_is_attribkits_gradcam_and_abs_counts_negative_evidence(tiny_cnn, images):
    import attribkit as ak
    from attribkit.evaluation.functional import pixel_relevance

    labels = torch.tensor([0, 1, 2, 3])
    relu = CAMLoss(tiny_cnn, "features", mass="relu")(images, labels)
    values = torch.as_tensor(ak.explain(tiny_cnn, images, target=labels, method="gradcam",
                                        layer="features").values)
    rel = pixel_relevance(values, (12, 12)).clamp(min=0)
    has_mass = rel.sum((1, 2)) > 0
    torch.testing.assert_close(relu.maps[has_mass], (rel / rel.sum((1, 2), keepdim=True))[has_mass],
                               rtol=1e-4, atol=1e-6)
    # a map that is negative everywhere: no ReLU mass (no penalty), but |M| mass
    with torch.no_grad():
        tiny_cnn.fc.weight.copy_(-tiny_cnn.fc.weight.abs())  # every class row <= 0: M <= 0 (A >= 0 after ReLU)
    assert CAMLoss(tiny_cnn, "features", mass="relu")(images, labels).penalty.item() == 0
    assert CAMLoss(tiny_cnn, "features", mass="abs")(images, labels).penalty.item() > 0.1
    with pytest.raises(InvalidOptionError):
        CAMLoss(tiny_cnn, mass="square")


def test_centre_kernel():
    k = centre_kernel((5, 7))
    assert k.shape == (5, 7) and k[2, 3] == 0 and k.max() == 1
    assert k[0, 0] == k[4, 6] == 1


def test_cam_and_gradcam_penalties_agree_on_a_gap_linear_head(tiny_cnn, images):
    labels = torch.tensor([0, 1, 2, 3])
    a = CAMLoss(tiny_cnn, "features", method="cam")(images, labels)
    b = CAMLoss(tiny_cnn, "features", method="gradcam")(images, labels)
    torch.testing.assert_close(a.maps, b.maps, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a.penalty, b.penalty, rtol=1e-4, atol=1e-6)


def test_camloss_auto_layer_weight_and_reduction(tiny_cnn, images):
    labels = torch.tensor([0, 1, 2, 3])
    auto = CAMLoss(tiny_cnn)
    assert auto.layer is None
    one = auto(images, labels)
    assert auto.layer_name == "features" and auto.layer is tiny_cnn.features
    assert list(auto.parameters()) == [] and len(auto.state_dict()) == 0  # the model is not a submodule
    three = CAMLoss(tiny_cnn, weight=3.0)(images, labels)
    torch.testing.assert_close(three.penalty, 3 * one.penalty)
    per_image = CAMLoss(tiny_cnn, reduction="none")(images, labels).penalty
    assert per_image.shape == (4,)
    torch.testing.assert_close(per_image.mean(), one.penalty)


def test_watch_mode_equals_the_call(tiny_cnn, images):
    labels = torch.tensor([0, 1, 2, 3])
    loss_fn = CAMLoss(tiny_cnn)  # auto layer, found inside the watch at the first forward
    with assert_model_untouched(tiny_cnn):
        with loss_fn.watch():
            logits = tiny_cnn(images)
            penalty = loss_fn.penalty(labels)
            with pytest.raises(RuntimeError, match="no forward"):
                loss_fn.penalty(labels)  # each forward is used once
    out = loss_fn(images, labels)
    torch.testing.assert_close(logits, out.logits)
    torch.testing.assert_close(penalty, out.penalty)
    with pytest.raises(RuntimeError, match="watch"):
        loss_fn.penalty(labels)


def test_no_grad_gives_detached_values(tiny_cnn, images):
    labels = torch.tensor([0, 1, 2, 3])
    with_grad = CAMLoss(tiny_cnn)(images, labels)
    with torch.no_grad():
        out = CAMLoss(tiny_cnn)(images, labels)
        rrr = RRRLoss(tiny_cnn)(images, torch.ones(4, 12, 12))
    assert not out.penalty.requires_grad and not rrr.penalty.requires_grad
    torch.testing.assert_close(out.penalty, with_grad.penalty.detach())


def test_camloss_errors(tiny_cnn, images):
    with pytest.raises(InvalidOptionError):
        CAMLoss(tiny_cnn, kernel="corner")
    with pytest.raises(InvalidOptionError):
        CAMLoss(tiny_cnn, method="scorecam")
    with pytest.raises(LayerError):
        CAMLoss(tiny_cnn, layer="featurs")
    loss_fn = CAMLoss(tiny_cnn)
    with assert_model_untouched(tiny_cnn):
        with pytest.raises(TargetError):
            loss_fn(images, torch.tensor([0, 1, 2, 9]))
        with pytest.raises(TargetError):
            loss_fn(images, torch.tensor([0, 1]))
        with pytest.raises(InputError):
            loss_fn(images, torch.tensor([0, 1, 2, 3]), allowed=torch.ones(4, 6, 6))
        with pytest.raises(RuntimeError, match="nested"), loss_fn.watch(), loss_fn.watch():
            pass


# ----------------------------------------------------------------------- RRRLoss


def test_rrr_equals_the_hand_computed_value_on_a_linear_model():
    """softmax(Wx + b): d/dx sum_k log p_k = sum_k W_k - K * sum_j p_j W_j, by formula (NumPy)."""
    torch.manual_seed(0)
    b_, c, h, w, k = 3, 2, 3, 4, 5
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, k)).double()
    with torch.no_grad():
        model[1].weight.mul_(4)  # peaky probabilities: a far-from-zero gradient
    x = torch.rand(b_, c, h, w, dtype=torch.float64)
    irrelevant = torch.rand(b_, h, w) < 0.5
    lam = 7.0

    W = model[1].weight.detach().numpy()  # (K, D)
    bias = model[1].bias.detach().numpy()
    X = x.numpy().reshape(b_, -1)
    z = X @ W.T + bias
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = W.sum(0)[None] - k * p @ W  # (B, D)
    A = np.broadcast_to(irrelevant.numpy()[:, None], (b_, c, h, w)).reshape(b_, -1)
    per_image = ((A * grad) ** 2).sum(1)
    expected_mean, expected_sum = lam * per_image.mean(), lam * per_image.sum()

    out = RRRLoss(model, weight=lam)(x, irrelevant)
    assert out.penalty.item() == pytest.approx(expected_mean, rel=1e-10)
    np.testing.assert_allclose(out.maps.detach().numpy().reshape(b_, -1), grad, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.logits.detach().numpy(), z, rtol=1e-12)
    assert RRRLoss(model, weight=lam, reduction="sum")(x, irrelevant).penalty.item() == \
        pytest.approx(expected_sum, rel=1e-10)
    assert not x.requires_grad  # the caller's tensor is not changed
    # a (B, C, H, W) annotation means the same when it repeats over channels
    full = irrelevant[:, None].expand(b_, c, h, w)
    assert RRRLoss(model, weight=lam)(x, full).penalty.item() == pytest.approx(expected_mean, rel=1e-10)
    # differentiable w.r.t. the weights (double backward)
    g = _grads(out.penalty, model)
    assert g["1.weight"].abs().sum() > 0


def test_rrr_watch_mode_and_errors(tiny_cnn, images):
    irrelevant = torch.zeros(4, 12, 12)
    irrelevant[:, :, 6:] = 1
    loss_fn = RRRLoss(tiny_cnn, weight=10.0)
    with assert_model_untouched(tiny_cnn):
        with loss_fn.watch():
            logits = tiny_cnn(images)
            penalty = loss_fn.penalty(irrelevant)
        out = loss_fn(images, irrelevant)
        with pytest.raises(InputError):
            loss_fn(images, torch.ones(4, 6, 6))
        with torch.no_grad(), loss_fn.watch(), pytest.raises(GradientModeError):
            tiny_cnn(images)
            loss_fn.penalty(irrelevant)
    torch.testing.assert_close(logits, out.logits)
    torch.testing.assert_close(penalty, out.penalty)
    assert not images.requires_grad


# ------------------------------------------------------------------- model safety


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("which", ["cam-auto", "cam-named", "rrr", "cam-watch"])
def test_no_hooks_left_when_the_model_raises(tiny_cnn, images, n, which):
    model = RaiseOnCall(tiny_cnn, n=n)
    labels = torch.tensor([0, 1, 2, 3])
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom"):
        for _ in range(2):  # n=2: the first call succeeds (the auto layer's probe is a call)
            if which == "cam-auto":
                CAMLoss(model)(images, labels)
            elif which == "cam-named":
                CAMLoss(model, "inner.features.3")(images, labels)
            elif which == "rrr":
                RRRLoss(model)(images, torch.ones(4, 12, 12))
            else:
                loss_fn = CAMLoss(model)
                with loss_fn.watch():
                    model(images)
                    loss_fn.penalty(labels)


def test_calls_leave_a_model_in_use_untouched(images):
    from attribkit.testing import as_users_have_it

    model = as_users_have_it(TinyCNN()).eval()  # frozen first conv, stale .grad, user hooks
    labels = torch.tensor([0, 1, 2, 3])
    with assert_model_untouched(model):
        CAMLoss(model)(images, labels)
        CAMLoss(model, method="cam")(images, labels)
        RRRLoss(model)(images, torch.ones(4, 12, 12))


# ------------------------------------------------------------------------ training


def test_camloss_training_moves_the_mass_into_the_allowed_region():
    torch.manual_seed(0)
    model = TinyCNN(classes=3)
    x, y = torch.rand(16, 3, 12, 12), torch.randint(0, 3, (16,))
    allowed = torch.zeros(12, 12)
    allowed[:, :6] = 1
    loss_fn = CAMLoss(model, "features", kernel=None, weight=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        before = loss_fn(x, y, allowed=allowed).penalty.item()
    model.train()
    for _ in range(25):
        out = loss_fn(x, y, allowed=allowed)
        loss = F.cross_entropy(out.logits, y) + out.penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        after = loss_fn(x, y, allowed=allowed).penalty.item()
    assert before > 0.3 and after < 0.5 * before, (before, after)


def test_rrr_training_reduces_the_input_gradient_on_the_irrelevant_region():
    torch.manual_seed(0)
    model = TinyCNN(classes=3).eval()  # no dropout noise
    x, y = torch.rand(16, 3, 12, 12), torch.randint(0, 3, (16,))
    irrelevant = torch.zeros(16, 12, 12)
    irrelevant[:, :, 6:] = 1
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):  # fit first: the penalty of a near-uniform softmax is ~0
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss_fn = RRRLoss(model, weight=100.0)
    before = loss_fn(x, irrelevant).penalty.item()
    for _ in range(20):
        out = loss_fn(x, irrelevant)
        loss = F.cross_entropy(out.logits, y) + out.penalty
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = loss_fn(x, irrelevant).penalty.item()
    assert before > 0 and after < 0.5 * before, (before, after)


# ------------------------------------------------------- CAMLoss on transformers


class _ChannelLastMystery(nn.Module):
    """Applies nn.Linear to the last dimension of a 4-D tensor: its layout is unknown."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.mix = nn.Linear(4, 4)
        self.act = nn.GELU()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        t = self.conv(x).permute(0, 2, 3, 1)
        t = self.act(self.mix(t))
        return self.head(t.mean((1, 2)))


@pytest.mark.parametrize("build,size,layer", [("timm_vit", 32, None), ("torchvision_swin", 64, "features.3")],
                         ids=["vit-tokens", "swin-channel-last"])
def test_camloss_reads_token_and_channel_last_layers_from_the_model(build, size, layer):
    """On a ViT block's tokens and a Swin stage's (B, h, w, C) output, CAMLoss's ReLU map is
    attribkit's Grad-CAM on the same layer (which reads the layout from the model)."""
    import attribkit as ak
    import tests.test_vit_models as vm
    from attribkit.evaluation.functional import pixel_relevance

    model, x = getattr(vm, build)(), vm.vit_images(2, size)
    labels = torch.tensor([1, 3])
    loss_fn = CAMLoss(model, layer, mass="relu")
    out = loss_fn(x, labels)
    expected = ak.explain(model, x, labels, method="gradcam", layer=layer or loss_fn.layer_name)
    assert loss_fn.last_layout.kind == ("BNC" if layer is None else "BHWC")
    rel = pixel_relevance(torch.as_tensor(expected.values), (size, size)).clamp(min=0)
    torch.testing.assert_close(out.maps, rel / (rel.sum((1, 2), keepdim=True) + 1e-8), rtol=1e-4, atol=1e-6)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    grads = torch.autograd.grad(CAMLoss(model, layer)(x, labels).penalty, [weights[0], weights[-1]])
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)  # a double backward


def test_camloss_refuses_what_it_cannot_read():
    import tests.test_vit_models as vm

    x, labels = torch.rand(2, 3, 8, 8), torch.tensor([0, 2])
    mystery = _ChannelLastMystery()
    loss_fn = CAMLoss(mystery, "mix")
    assert loss_fn(x, labels).maps.shape == (2, 8, 8) and loss_fn.last_layout.kind == "BHWC"  # a Linear's output
    with pytest.raises(LayerError, match="layout="):  # a GELU's (B, 8, 8, 4): either layout is plausible
        CAMLoss(mystery, "act")(x, labels)
    assert CAMLoss(mystery, "act", layout="BHWC")(x, labels).maps.shape == (2, 8, 8)
    with pytest.raises(LayerError, match="method='gradcam'"):
        CAMLoss(vm.timm_vit(), method="cam")(vm.vit_images(2), labels)
    with pytest.raises(InvalidOptionError, match="layout"):
        CAMLoss(mystery, layout="NCHW")
