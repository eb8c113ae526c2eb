"""explain(): target forms against hand-computed gradients, batching, errors."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import attribkit as ak
from attribkit.errors import (GradientModeError, InputError, InvalidOptionError, LayerError,
                              TargetError, UnknownMethodError)
from attribkit.result import Attribution


class Quadratic(nn.Module):
    """score_c(x) = sum(W_c * x**2), so dscore_c/dx = 2 * W_c * x exactly."""

    def __init__(self, classes=4, shape=(3, 5, 5)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, *shape, dtype=torch.float64))

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x**2, self.weight)


@pytest.fixture
def quad():
    torch.manual_seed(0)
    return Quadratic()


@pytest.fixture
def x64():
    torch.manual_seed(2)
    return torch.randn(3, 3, 5, 5, dtype=torch.float64)


def hand_gradient(model, x, classes):
    return torch.stack([2 * model.weight[c] * x[i] for i, c in enumerate(classes)])


@pytest.mark.parametrize("target, classes", [
    (2, [2, 2, 2]),
    ([0, 3, 1], [0, 3, 1]),
    ((3, 2, 1), [3, 2, 1]),
    (torch.tensor([1, 0, 2]), [1, 0, 2]),
    (np.array([2, 1, 0]), [2, 1, 0]),
])
def test_class_targets_match_hand_computed_gradient(quad, x64, target, classes):
    r = ak.explain(quad, x64, target, method="saliency", abs=False)
    torch.testing.assert_close(r.values, hand_gradient(quad, x64, classes), rtol=0, atol=1e-12)
    assert r.target.tolist() == classes
    assert r.method == "saliency" and r.layer is None and r.input_size == (5, 5)


def test_none_target_is_each_images_top_class(quad, x64):
    top = quad(x64).argmax(1).tolist()
    r = ak.explain(quad, x64, method="saliency", abs=False)
    assert r.target.tolist() == top
    torch.testing.assert_close(r.values, hand_gradient(quad, x64, top), rtol=0, atol=1e-12)


def test_callable_target_explains_any_scalar(quad, x64):
    r = ak.explain(quad, x64, lambda s: s[:, 0] - s[:, 1], method="saliency", abs=False)
    expected = 2 * (quad.weight[0] - quad.weight[1]) * x64
    torch.testing.assert_close(r.values, expected, rtol=0, atol=1e-12)
    assert r.target is None and callable(r.meta["target_fn"])


def test_abs_and_take_max_follow_simonyan(quad, x64):
    grad = hand_gradient(quad, x64, [1, 1, 1])
    r = ak.explain(quad, x64, 1, method="saliency", take_max=True)
    torch.testing.assert_close(r.values, grad.abs().amax(1, keepdim=True), rtol=0, atol=1e-12)
    r = ak.explain(quad, x64, 1, method="gradient", abs=False, take_max=True)
    torch.testing.assert_close(r.values, grad.amax(1, keepdim=True), rtol=0, atol=1e-12)


def test_batched_equals_per_image_even_for_a_model_in_train_mode(tiny_cnn):
    torch.manual_seed(3)
    x = torch.randn(5, 3, 12, 12)
    tiny_cnn.train()  # BatchNorm and Dropout would couple/perturb images if not set to eval
    targets = [0, 1, 2, 3, 4]
    whole = ak.explain(tiny_cnn, x, targets, method="saliency")
    chunked = ak.explain(tiny_cnn, x, targets, method="saliency", batch_size=2)
    single = torch.cat([ak.explain(tiny_cnn, x[i:i + 1], targets[i], method="saliency").values
                        for i in range(5)])
    torch.testing.assert_close(whole.values, single, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(chunked.values, single, rtol=1e-5, atol=1e-7)
    assert tiny_cnn.training


def test_works_inside_no_grad_and_refuses_inference_mode(quad, x64):
    with torch.no_grad():
        r = ak.explain(quad, x64, 0, method="saliency", abs=False)
    torch.testing.assert_close(r.values, hand_gradient(quad, x64, [0, 0, 0]))
    with torch.inference_mode(), pytest.raises(GradientModeError, match="inference_mode"):
        ak.explain(quad, x64, method="saliency")
    with torch.inference_mode():
        frozen = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    with pytest.raises(GradientModeError, match="inference_mode"):
        ak.explain(quad, frozen, method="saliency")


@pytest.mark.parametrize("target, message", [
    (4, r"target 4 is out of range for a model with 4 outputs \(valid: 0..3\)"),
    ([0, 1], "got 2 targets for a batch of 3"),
    ([0, -1, 2], "target -1 is out of range"),
    (torch.tensor([0.5, 1.0, 2.0]), "one integer class per image"),
    ("cat", "target must be None, an int"),
    (lambda s: s, r"must return a \(3,\) tensor"),
])
def test_bad_targets_are_named(quad, x64, target, message):
    with pytest.raises(TargetError, match=message):
        ak.explain(quad, x64, target, method="saliency")


def test_class_target_on_non_classification_output_asks_for_a_callable():
    seg = nn.Conv2d(3, 2, 1)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(TargetError, match="pass target as a callable"):
        ak.explain(seg, x, 1, method="saliency")
    r = ak.explain(seg, x, lambda s: s[:, 1].sum((1, 2)), method="saliency", abs=False)
    expected = seg.weight[1, :, 0, 0].detach()[None, :, None, None].expand(2, 3, 4, 4)
    torch.testing.assert_close(r.values, expected)


@pytest.mark.parametrize("inputs, message", [
    (np.zeros((2, 3, 5, 5)), "must be a torch.Tensor"),
    (torch.zeros(2, 3, 5, 5, dtype=torch.long), "floating-point"),
    (torch.zeros(5), "non-empty batch"),
    (torch.zeros(0, 3, 5, 5, dtype=torch.float64), "non-empty batch"),
])
def test_bad_inputs_are_named(quad, inputs, message):
    with pytest.raises(InputError, match=message):
        ak.explain(quad, inputs, method="saliency")


def test_image_methods_ask_for_a_batch_dimension(tiny_cnn):
    with pytest.raises(InputError, match=r"x.unsqueeze\(0\)"):
        ak.explain(tiny_cnn, torch.zeros(3, 12, 12), method="activation_map")


def test_unknown_method_option_and_batch_size(quad, x64):
    with pytest.raises(UnknownMethodError, match="did you mean 'saliency'"):
        ak.explain(quad, x64, method="saliancy")
    with pytest.raises(InvalidOptionError, match="no option 'smooth'.*valid options: abs, take_max"):
        ak.explain(quad, x64, method="saliency", smooth=True)
    with pytest.raises(InvalidOptionError, match="batch_size must be a positive integer"):
        ak.explain(quad, x64, method="saliency", batch_size=0)


def test_layer_resolution_by_name_module_and_auto(tiny_cnn, images):
    auto = ak.explain(tiny_cnn, images, method="activation_map")
    assert auto.layer == "features"  # the Sequential finishes after its last ReLU
    by_name = ak.explain(tiny_cnn, images, method="activation_map", layer="features.2")
    by_module = ak.explain(tiny_cnn, images, method="activation_map", layer=tiny_cnn.features[2])
    assert by_name.layer == by_module.layer == "features.2"
    torch.testing.assert_close(by_name.values, by_module.values)
    manual = tiny_cnn.features[:3](images).mean(1, keepdim=True)
    torch.testing.assert_close(by_name.values, manual)
    assert by_name.values.shape == (4, 1, 12, 12)
    assert auto.upsampled().shape == (4, 1, 12, 12)


def test_auto_layer_on_resnet18_is_layer4():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    r = ak.explain(model, torch.randn(2, 3, 64, 64), method="activation_map")
    assert r.layer == "layer4" and r.values.shape == (2, 1, 2, 2)


def test_bad_layers_are_named(tiny_cnn, images):
    with pytest.raises(LayerError, match="'featurs.2' is not in the model TinyCNN; did you mean 'features.2'"):
        ak.explain(tiny_cnn, images, method="activation_map", layer="featurs.2")
    with pytest.raises(LayerError, match="not a submodule"):
        ak.explain(tiny_cnn, images, method="activation_map", layer=nn.ReLU())
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 2))
    with pytest.raises(LayerError, match="no layer of Sequential has a spatial"):
        ak.explain(flat, images, method="activation_map")


def test_upsampled_numpy_matches_torch_bilinear():
    torch.manual_seed(0)
    small = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    as_tensor = Attribution(small, "m", input_size=(7, 10)).upsampled()
    as_array = Attribution(small.numpy(), "m", input_size=(7, 10)).upsampled()
    np.testing.assert_allclose(as_array, as_tensor.numpy(), atol=1e-12)
    hot = np.zeros((1, 1, 2, 2))
    hot[0, 0, 1, 0] = 1
    up = Attribution(hot, "m", input_size=(8, 8)).upsampled()[0, 0]
    assert np.unravel_index(up.argmax(), up.shape)[0] >= 4 and np.unravel_index(up.argmax(), up.shape)[1] < 4
