"""Feature visualisation: feature maps, activation maximisation, filter grids."""

import numpy as np
import pytest
import torch
from torch import nn

from attribkit.errors import InputError, InvalidOptionError, LayerError, TargetError
from attribkit.features import feature_maps, filter_grid, maximize_activation
from attribkit.features.adam import Adam
from attribkit.features.transforms import gaussian_blur, roll_rows
from attribkit.images import normalize
from attribkit.testing import RaiseOnCall, TinyCNN, as_users_have_it, assert_model_untouched

# The tiny CNN's inputs are ~N(0, 1); with these statistics x in [0, 1] maps to [-2.5, 2.5].
MEAN, STD = (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)


def tiny(seed=0):
    torch.manual_seed(seed)
    return TinyCNN().eval()


def detectors():
    """One conv + ReLU whose four channels have known, distinct optima: horizontal
    edges, vertical edges (Sobel), red-over-green, blue-over-red; then a linear head
    with three classes: "horizontal, not vertical", "red, not blue", "blue, not red"."""
    sobel = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]]) / 4
    w = torch.zeros(4, 3, 3, 3)
    w[0], w[1] = sobel / 3, sobel.T / 3
    w[2, 0, 1, 1], w[2, 1, 1, 1] = 1.0, -1.0
    w[3, 2, 1, 1], w[3, 0, 1, 1] = 1.0, -1.0
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(w)
    head = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, -1, 0, 0], [0, 0, 1, -1], [0, 0, -1, 1]]))
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()


def channel_means(model, pictures, layer, normalized=True):
    """Each image's per-channel mean activation, measured independently of the optimiser."""
    x = normalize(pictures, MEAN, STD) if normalized else pictures
    return feature_maps(model, x, layer).channel_means


# ------------------------------------------------------------------------ feature maps


def test_feature_maps_match_the_layer_output_and_leave_the_model_untouched(images):
    model = as_users_have_it(tiny())
    with assert_model_untouched(model):
        maps = feature_maps(model, images, "features.3", top_k=5)
    assert model.training                                    # the user's mode is back
    with torch.no_grad():
        expected = model.eval().features[:4](images)
    torch.testing.assert_close(maps.activations, expected)
    assert maps.layer == "features.3" and maps.activations.shape == (4, 16, 12, 12)
    means = expected.mean((2, 3))
    assert maps.top_channels.shape == (4, 5)
    for b in range(4):
        assert maps.top_channels[b].tolist() == means[b].argsort(descending=True)[:5].tolist()


def test_feature_maps_hooks_are_removed(images):
    model = tiny()
    feature_maps(model, images, model.features[4])
    assert all(not m._forward_hooks for m in model.modules())


def test_feature_maps_auto_layer_is_the_last_spatial_one(images):
    assert feature_maps(tiny(), images).layer == "features"        # completes after features.4


def test_feature_maps_layer_not_in_the_model(images):
    model = tiny()
    with assert_model_untouched(model), pytest.raises(LayerError, match="not in the model"):
        feature_maps(model, images, "features.9")
    with assert_model_untouched(model), pytest.raises(LayerError, match="not a submodule"):
        feature_maps(model, images, nn.ReLU())


def test_feature_maps_model_that_raises_is_left_untouched(images):
    model = RaiseOnCall(as_users_have_it(tiny())).train()
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom in forward"):
        feature_maps(model, images, "inner.features.3")


@pytest.mark.parametrize("top_k", [0, 17, 2.0])
def test_feature_maps_bad_top_k(images, top_k):
    with pytest.raises(InvalidOptionError, match=r"1\.\.16"):
        feature_maps(tiny(), images, "features.3", top_k=top_k)


def test_feature_maps_bad_images():
    with pytest.raises(InputError, match="float"):
        feature_maps(tiny(), torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "features.3")


def test_feature_map_plot_shows_the_top_channels_on_one_scale(images):
    maps = feature_maps(tiny(), images, "features.4", top_k=3)
    fig = maps.plot(index=1)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == [f"ch {c}" for c in maps.top_channels[1].tolist()]
    np.testing.assert_allclose(shown[0].images[0].get_array(),
                               maps.activations[1, maps.top_channels[1, 0]].numpy())
    assert len({ax.images[0].get_clim() for ax in shown}) == 1


class SharedReLU(nn.Module):
    """One ReLU module called twice in a forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.act(self.conv2(self.act(self.conv1(x)))).mean((2, 3)))


def test_a_layer_called_twice_is_read_at_its_last_call(images):
    model = SharedReLU().eval()
    maps = feature_maps(model, images, "act")
    with torch.no_grad():
        expected = torch.relu(model.conv2(torch.relu(model.conv1(images))))
    torch.testing.assert_close(maps.activations, expected)
    vis = maximize_activation(model, "act", [5], steps=5, image_size=12)  # 6 channels: the 2nd call
    measured = feature_maps(model, vis.images, "act").channel_means[0, 5]
    torch.testing.assert_close(measured, vis.scores[0])


# ---------------------------------------------------------------- activation maximisation


@pytest.mark.parametrize("param, lr", [("pixel", 0.05), ("fft", 0.1)])
def test_maximisation_raises_every_requested_channel_in_one_batch(param, lr):
    model = tiny()
    channels = list(range(16))
    vis = maximize_activation(model, "features.3", channels, steps=30, lr=lr, image_size=16,
                              param=param, mean=MEAN, std=STD)
    assert vis.images.shape == (16, 3, 16, 16)
    assert 0.0 <= vis.images.min() and vis.images.max() <= 1.0          # displayable pictures
    measured = channel_means(model, vis.images, "features.3")[torch.arange(16), channels]
    torch.testing.assert_close(measured, vis.scores, rtol=1e-4, atol=1e-5)
    gain = measured - vis.start_scores
    # measured on this model (start -0.26 .. 0.18): pixel gains 0.058 .. 1.44 (mean 0.63),
    # fft 0.027 .. 1.15 (mean 0.50)
    assert gain.min() > 0.02, gain
    assert gain.mean() > 0.2, gain


@pytest.mark.parametrize("param, lr", [("pixel", 0.05), ("fft", 0.1)])
def test_image_i_drives_channel_i_more_than_the_other_images_do(param, lr):
    model = detectors()
    vis = maximize_activation(model, "1", [0, 1, 2, 3], steps=30, lr=lr, image_size=16, param=param)
    cross = channel_means(model, vis.images, "1", normalized=False)      # rows: images, cols: channels
    diagonal = cross.diagonal()
    others = cross.masked_fill(torch.eye(4, dtype=torch.bool), -1.0).max(dim=0).values
    # measured: diagonal 0.25 .. 1.0, best other image 0.03 .. 0.13
    assert (diagonal > others + 0.1).all(), cross
    assert (vis.scores > vis.start_scores + 0.2).all()


@pytest.mark.parametrize("param", ["pixel", "fft"])
def test_batch_equals_each_channel_alone(param):
    model = tiny()
    channels = [2, 7, 11, 7]
    options = dict(steps=15, image_size=12, param=param, jitter=3, blur_every=3,
                   mean=MEAN, std=STD, seed=5)
    batch = maximize_activation(model, "features.3", channels, **options)
    alone = torch.cat([maximize_activation(model, "features.3", [c], **options).images
                       for c in channels])
    torch.testing.assert_close(batch.images, alone, rtol=0, atol=1e-5)   # measured: 4e-7
    assert torch.equal(batch.images[1], batch.images[3])                 # same channel, same seed
    assert not torch.allclose(batch.images[0], batch.images[1])


def test_seeded_and_deterministic():
    model = tiny()
    run = lambda seed: maximize_activation(model, "features.3", [1, 4], steps=5, image_size=12,
                                           seed=seed).images
    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


def test_maximisation_leaves_the_model_untouched_and_writes_no_grad():
    model = as_users_have_it(tiny())
    with assert_model_untouched(model):
        maximize_activation(model, "features.3", [0, 1], steps=3, image_size=12)
        maximize_activation(model, classes=[0, 1], steps=3, image_size=12)
    assert model.training and model.features[3].weight.grad is None


def test_maximisation_works_inside_no_grad():
    with torch.no_grad():
        vis = maximize_activation(tiny(), "features.3", [0, 1], steps=5, image_size=12,
                                  mean=MEAN, std=STD)
    assert (vis.scores > vis.start_scores).all()


def test_model_that_raises_mid_optimisation_is_left_untouched():
    model = RaiseOnCall(as_users_have_it(tiny()), n=4).train()
    with assert_model_untouched(model), pytest.raises(RuntimeError, match="boom in forward"):
        maximize_activation(model, classes=[0, 1], steps=10, image_size=12)
    assert len(model.calls) == 4                                          # it did get into the loop


def test_class_logit_target_on_a_model_with_known_classes():
    model = detectors()
    vis = maximize_activation(model, classes=[0, 1, 2], steps=30, image_size=16)
    assert vis.objective == "class" and vis.layer is None and vis.targets == [0, 1, 2]
    with torch.no_grad():
        logits = model(vis.images)
    own = logits[torch.arange(3), [0, 1, 2]]
    torch.testing.assert_close(own, vis.scores, rtol=1e-4, atol=1e-5)
    # measured: start -0.005 / 0.000 / 0.002, after 30 steps 0.23 / 1.0 / 1.0
    assert (own > vis.start_scores + 0.1).all(), (vis.start_scores, own)
    assert logits.argmax(1).tolist() == [0, 1, 2]                        # each image is its class
    red, green, blue = vis.images[1].mean((1, 2))
    assert red > 0.9 and green < 0.1 and blue < red - 0.3               # red: relu(R - G) is maximal


def test_class_logits_rise_on_the_tiny_cnn():
    model = tiny()
    vis = maximize_activation(model, classes=[0, 1, 2, 3, 4], steps=30, image_size=16,
                              mean=MEAN, std=STD)
    with torch.no_grad():
        own = model(normalize(vis.images, MEAN, STD))[torch.arange(5), [0, 1, 2, 3, 4]]
    # measured gains: 0.28 0.14 0.18 0.06 0.20 (a random head: class 0 stays the top class)
    assert (own > vis.start_scores + 0.04).all(), (vis.start_scores, own)


def test_deepdream_starts_from_the_given_image_and_amplifies_the_layer():
    model = tiny()
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    start = torch.stack([torch.stack([yy, xx, 1 - yy]), torch.stack([xx, 0.5 + 0 * xx, yy])]) * 0.8 + 0.1
    still = maximize_activation(model, "features.4", steps=0, start=start, mean=MEAN, std=STD)
    assert still.objective == "norm" and still.targets == [None, None]
    assert torch.equal(still.images, start)
    acts = feature_maps(model, normalize(start, MEAN, STD), "features.4").activations
    torch.testing.assert_close(still.start_scores, (acts ** 2).flatten(1).mean(1))
    dream = maximize_activation(model, "features.4", steps=20, lr=0.02, start=start,
                                mean=MEAN, std=STD)
    # measured: mean(A^2) 0.056 -> 0.26 and 0.033 -> 0.24; correlation with the start 0.83
    assert (dream.scores > 2 * dream.start_scores).all(), (dream.start_scores, dream.scores)
    similarity = torch.corrcoef(torch.stack([dream.images.flatten(), start.flatten()]))[0, 1]
    assert similarity > 0.7                                               # still the same picture


def test_fft_parametrisation_reproduces_a_start_image():
    start = torch.rand(1, 3, 10, 13).clamp(0.05, 0.95)
    vis = maximize_activation(tiny(), "features.3", [0], steps=0, start=start, param="fft")
    torch.testing.assert_close(vis.images, start, rtol=0, atol=1e-5)


def test_history_records_the_objective_per_step():
    vis = maximize_activation(tiny(), "features.3", [0, 1, 2], steps=7, image_size=12, jitter=0,
                              blur_every=0, l2=0.0, mean=MEAN, std=STD)
    assert vis.history.shape == (7, 3)
    torch.testing.assert_close(vis.history[0], vis.start_scores)          # no jitter: same input
    assert (vis.history[-1] > vis.history[0]).all()


# ------------------------------------------------------------------------ bad input


def test_channel_out_of_range_names_the_valid_range():
    model = tiny()
    with assert_model_untouched(model), \
            pytest.raises(TargetError, match=r"channel 16 is out of range: layer 'features.3' has 16 "
                                             r"channels \(valid: 0\.\.15\)"):
        maximize_activation(model, "features.3", [0, 16], steps=1, image_size=8)


def test_class_out_of_range_names_the_valid_range():
    with pytest.raises(TargetError, match=r"class 5 .* \(valid: 0\.\.4\)"):
        maximize_activation(tiny(), classes=5, steps=1, image_size=8)


def test_bad_layer():
    model = tiny()
    with assert_model_untouched(model), pytest.raises(LayerError, match="did you mean 'features.3'"):
        maximize_activation(model, "features.33", [0], steps=1, image_size=8)


@pytest.mark.parametrize("options, error, match", [
    (dict(channels=[0], classes=[0]), InvalidOptionError, "leave layer= and channels= out"),
    (dict(channels=[0], param="wavelet"), InvalidOptionError, "pixel, fft"),
    (dict(channels=[0], steps=-1), InvalidOptionError, "steps"),
    (dict(channels=[0], lr=0), InvalidOptionError, "lr"),
    (dict(channels=[True]), TargetError, "integers"),
    (dict(start=torch.randn(1, 3, 8, 8)), InputError, r"\[0, 1\]"),
    (dict(channels=[0, 1, 2], start=torch.rand(2, 3, 8, 8)), InputError, "2 start images for 3"),
    (dict(start=torch.rand(1, 3, 8, 8), image_size=16), InputError, "does not match"),
])
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        maximize_activation(tiny(), "features.3", steps=options.pop("steps", 1), **options)


# ---------------------------------------------------------------- building blocks


def test_roll_rows_is_torch_roll_per_row():
    x = torch.randn(3, 2, 5, 7)
    shifts = torch.tensor([[1, -2], [0, 3], [-4, 6]])
    expected = torch.stack([torch.roll(x[b], tuple(shifts[b].tolist()), dims=(1, 2)) for b in range(3)])
    assert torch.equal(roll_rows(x, shifts), expected)


def test_gaussian_blur_keeps_constants_and_smooths_noise():
    flat = torch.full((1, 3, 9, 9), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 1.0), flat)
    noise = torch.rand(1, 3, 9, 9)
    assert gaussian_blur(noise, 1.0).std() < 0.6 * noise.std()


def test_adam_matches_torch_optim_adam():
    ours = torch.randn(6)
    theirs = ours.clone().requires_grad_(True)
    reference, adam = torch.optim.Adam([theirs], lr=0.1), Adam(ours, 0.1)
    for grad in torch.randn(5, 6):
        adam.step(grad)
        theirs.grad = grad.clone()
        reference.step()
    torch.testing.assert_close(ours, theirs.detach())


# ------------------------------------------------------------------------ filter grids


def test_filter_grid_draws_first_layer_weights_as_rgb_tiles():
    model = tiny()
    fig = filter_grid(model, cols=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 8 and fig._suptitle.get_text() == "features.0: filters"
    w = model.features[0].weight.detach()[2]
    expected = (0.5 + 0.5 * w / w.abs().max()).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(shown[2].images[0].get_array(), expected, rtol=1e-6)


def test_filter_grid_of_maximised_channels():
    model = tiny()
    with assert_model_untouched(model):
        fig = filter_grid(model, "features.3", maximize=True, channels=[0, 5, 9], steps=3,
                          image_size=10)
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["channel 0", "channel 5", "channel 9"]
    assert shown[0].images[0].get_array().shape == (10, 10, 3)


def test_filter_grid_errors():
    model = tiny()
    with pytest.raises(LayerError, match="1 or 3 input channels"):
        filter_grid(model, "features.3")
    with pytest.raises(LayerError, match="not a Conv2d"):
        filter_grid(model, "features.2")
    with pytest.raises(InvalidOptionError, match=r"valid: 0\.\.7"):
        filter_grid(model, channels=[8])
    with pytest.raises(InvalidOptionError, match="maximize=True"):
        filter_grid(model, steps=3)
