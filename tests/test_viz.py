"""The visualiser: what is drawn, checked on the rendered arrays and the figures' axes."""

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.image import imread
from torch import nn

import attribkit as ak
from attribkit.images import normalize, to_display
from attribkit.result import Attribution
from attribkit.viz.rendering import prepare_map
from attribkit.viz import (
    CMAPS,
    MODES,
    curve_auc,
    normalize_map,
    reduce_channels,
    render,
    standardize_rgb,
)


@pytest.fixture
def picture():
    return np.random.default_rng(0).uniform(0.1, 0.9, (8, 8, 3))


# --------------------------------------------------------------------- pure rendering


def test_masked_image_positive_keeps_exactly_the_pixels_above_the_threshold(picture):
    values = np.random.default_rng(1).normal(size=(3, 8, 8))
    summed = values.sum(0)
    out = render(values, picture, mode="masked_image", sign="positive", outlier_perc=0, threshold=0.3)
    keep = np.maximum(summed, 0) / summed.max() > 0.3
    assert 0 < keep.sum() < keep.size
    np.testing.assert_array_equal(out, (picture * keep[..., None]).astype(np.float32))


def test_heat_map_of_a_one_hot_cam_peaks_at_the_right_place_after_upsampling():
    cam = np.zeros((1, 4, 4))
    cam[0, 2, 1] = 5.0
    out = render(cam, mode="heat_map", sign="absolute_value", outlier_perc=0, size=(16, 16))
    hot = np.asarray(colormaps[CMAPS["absolute_value"]](1.0))[:3]
    cold = np.asarray(colormaps[CMAPS["absolute_value"]](0.0))[:3]
    is_hot = np.all(np.isclose(out, hot, atol=1e-6), axis=-1)
    # cell (2, 1) covers rows 8..11 and columns 4..7; its centre pixels are the peak
    assert sorted(zip(*np.nonzero(is_hot))) == [(9, 5), (9, 6), (10, 5), (10, 6)]
    assert np.allclose(out[:6], cold, atol=1e-6) and np.allclose(out[:, 10:], cold, atol=1e-6)
    # the resize is torch's bilinear upsampling (align_corners=False)
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(cam)[None], size=(16, 16),
                                                mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(prepare_map(cam, (16, 16), outlier_perc=0), upsampled / upsampled.max(),
                               atol=1e-6)
    # the same map drawn over an image of that size lines up with it
    image = np.zeros((16, 16, 3))
    blended = render(cam, image, mode="blended_heat_map", outlier_perc=0, alpha=1.0)
    np.testing.assert_allclose(blended, out, atol=1e-6)


def test_signs_select_and_scale_the_map():
    m = np.array([[-4.0, -2.0], [1.0, 2.0]])
    np.testing.assert_allclose(normalize_map(m, "all", 0), m / 4)
    np.testing.assert_allclose(normalize_map(m, "positive", 0), [[0, 0], [0.5, 1]])
    np.testing.assert_allclose(normalize_map(m, "negative", 0), [[1, 0.5], [0, 0]])
    np.testing.assert_allclose(normalize_map(m, "absolute_value", 0), [[1, 0.5], [0.25, 0.5]])
    assert not normalize_map(-np.abs(m), "positive").any()  # nothing to show stays 0
    with pytest.raises(ValueError, match="sign must be one of"):
        normalize_map(m, "both")


def test_outlier_clipping_saturates_the_top_percent():
    m = np.arange(1.0, 101.0).reshape(10, 10)
    norm = normalize_map(m, "absolute_value", outlier_perc=5)
    scale = np.percentile(m, 95)
    np.testing.assert_allclose(norm, np.clip(m / scale, 0, 1))
    assert (norm == 1).sum() == 5 and norm.min() == pytest.approx(1 / scale)


def test_modes_compose_image_and_heat_map(picture):
    values = np.random.default_rng(2).normal(size=(1, 8, 8))
    norm = normalize_map(values[0], "all", 2.0)
    heat = np.asarray(colormaps["RdBu_r"]((norm + 1) / 2))[..., :3]
    np.testing.assert_allclose(render(values, mode="heat_map", sign="all"), heat, atol=1e-6)
    np.testing.assert_allclose(render(values, picture, sign="all", alpha=0.3),
                               0.7 * picture + 0.3 * heat, atol=1e-6)
    weight = np.abs(norm)[..., None]
    np.testing.assert_allclose(render(values, picture, mode="alpha_scaling", sign="all"),
                               weight * picture + (1 - weight), atol=1e-6)
    np.testing.assert_allclose(render(values, picture, mode="original_image"), picture, atol=1e-6)
    for mode in MODES:
        out = render(values, picture, mode=mode)
        assert out.shape == (8, 8, 3) and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1
    with pytest.raises(ValueError, match="pass image="):
        render(values, mode="masked_image")
    with pytest.raises(ValueError, match="mode must be one of"):
        render(values, picture, mode="blend")


def test_channel_reductions():
    v = np.array([[[1.0]], [[-3.0]], [[2.0]]])
    assert reduce_channels(v, "sum")[0, 0] == 0.0
    assert reduce_channels(v, "max")[0, 0] == -3.0  # largest magnitude, sign kept
    assert reduce_channels(v, "mean")[0, 0] == 0.0


def test_standardize_rgb_is_flashtorch_standardize_and_clip():
    g = np.random.default_rng(3).normal(size=(3, 6, 6))
    out = standardize_rgb(g)
    np.testing.assert_allclose(out, np.clip(((g - g.mean()) / g.std() * 0.1 + 0.5).transpose(1, 2, 0), 0, 1),
                               atol=1e-6)
    assert np.allclose(standardize_rgb(np.ones((3, 2, 2))), 0.5)


# --------------------------------------------------------------------------- figures


def cell(ax) -> np.ndarray:
    return np.asarray(ax.images[0].get_array())


def test_show_draws_one_row_per_image_and_one_column_per_mode():
    torch.manual_seed(0)
    pictures = torch.rand(3, 3, 8, 8)
    cams = torch.rand(3, 1, 2, 2)
    result = Attribution(cams, method="gradcam", target=torch.tensor([2, 0, 1]), layer="layer4",
                         input_size=(8, 8))
    fig = ak.show(result, normalize(pictures), mode=["original_image", "heat_map", "masked_image"],
                  sign="positive", class_names=["cat", "dog", "owl"])
    axes = np.array(fig.axes).reshape(3, 3)
    display = pictures.permute(0, 2, 3, 1).numpy()
    for i in range(3):
        np.testing.assert_allclose(cell(axes[i, 0]), display[i], atol=1e-5)  # denormalised input
        np.testing.assert_allclose(cell(axes[i, 2]), render(cams[i], display[i], mode="masked_image",
                                                            sign="positive"), atol=1e-5)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["owl", "cat", "dog"]
    assert axes[0, 1].get_title() == "heat_map\n(positive)"
    assert fig._suptitle.get_text() == "gradcam @ layer4"
    # the same picture given channels-last as a NumPy array draws the same
    same = ak.show(result, display, mode="masked_image", sign="positive")
    np.testing.assert_allclose(cell(same.axes[0]), cell(axes[0, 2]), atol=1e-6)


def test_show_without_images_colorbar_and_raw_arrays():
    values = np.random.default_rng(0).normal(size=(2, 3, 6, 6))
    fig = ak.show(values, sign="all", colorbar=True)
    image_axes = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(image_axes) == 2 and len(fig.axes) == 4  # two cells + two colorbars
    np.testing.assert_allclose(cell(image_axes[1]), render(values[1], mode="heat_map", sign="all"),
                               atol=1e-6)
    with pytest.raises(ValueError, match="2 maps but 3 images"):
        ak.show(values, np.zeros((3, 6, 6, 3)))


def test_show_titles_the_class_explained_and_draws_a_bar_per_column():
    cams = torch.rand(2, 1, 2, 2)
    result = Attribution(cams, method="gradcam", target=torch.tensor([1, 1]), layer="layer4", input_size=(8, 8))
    fig = ak.show(result, torch.rand(2, 3, 8, 8), mode=["original_image", "blended_heat_map"],
                  class_names=["cat", "owl"], colorbar="column")
    assert fig._suptitle.get_text() == "gradcam @ layer4 · class owl"
    assert len([ax for ax in fig.axes if ax.get_label() == "<colorbar>"]) == 1  # one, under the heat maps


class Tiny(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return Tiny().eval()


@pytest.fixture
def inputs():
    torch.manual_seed(1)
    return torch.randn(2, 3, 8, 8)


def grid_axes(fig) -> list:
    """The image cells of a figure (its colour bars left out)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colorbars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_compare_grid_is_images_by_methods_with_titles(tiny, inputs):
    methods = ["saliency", "example.activation_map"]
    fig = ak.compare(tiny, inputs, methods, class_names=["cat", "dog", "owl"], abs=False)
    axes = np.array(grid_axes(fig)).reshape(2, 3)  # the input column, then one per method
    probs = tiny(inputs).softmax(1).detach()
    top = probs.argmax(1)
    names = ["cat", "dog", "owl"]
    for i in range(2):
        assert axes[i, 0].get_title() == "input"
        np.testing.assert_allclose(cell(axes[i, 0]), to_display(inputs)[i], atol=1e-6)
        # each row labelled with its number and the model's top class
        assert axes[i, 0].get_ylabel() == f"image {i}\ntop: {names[top[i]]} ({probs[i, top[i]]:.2f})"
        for j, method in enumerate(methods):
            assert axes[i, j + 1].get_title() == f"{method}\n{names[top[i]]} ({probs[i, top[i]]:.2f})"
    # one colour bar per method, under its column
    bars = colorbars(fig)
    assert [b.get_xlabel() for b in bars] == ["|attribution|, per image"] * len(methods)
    assert all(b.get_ylim() == (0.0, 1.0) or b.get_xlim() == (0.0, 1.0) for b in bars)
    # abs=False reached saliency (the option activation_map lacks is not passed to it)
    signed = ak.explain(tiny, inputs, method="saliency", abs=False)
    np.testing.assert_allclose(cell(axes[1, 1]), render(signed.values[1], to_display(inputs)[1]), atol=1e-5)
    with pytest.raises(ak.InvalidOptionError, match="none of the methods"):
        ak.compare(tiny, inputs, methods, abss=True)
    bare = ak.compare(tiny, inputs, ["saliency"], target=1, show_image=False, colorbar=False,
                      row_labels=["a.png", "b.png"])
    assert [ax.get_title() for ax in bare.axes] == [f"saliency\nclass 1 ({probs[0, 1]:.2f})",
                                                    f"saliency\nclass 1 ({probs[1, 1]:.2f})"]
    assert [ax.get_ylabel() for ax in bare.axes] == ["a.png", "b.png"]


def test_compare_names_imagenet_classes_for_1000_outputs(inputs):
    torch.manual_seed(0)
    model = Tiny(classes=1000).eval()
    fig = ak.compare(model, inputs[:1], ["saliency"], target=24, show_image=False)
    assert fig.axes[0].get_title().startswith("saliency\ngreat grey owl (")


def test_compare_models_before_and_after(tiny, inputs):
    torch.manual_seed(5)
    other = Tiny().eval()
    fig = ak.compare_models({"before": tiny, "after": other}, inputs, method="saliency", target=0,
                            class_names=["cat", "dog", "owl"])
    axes = grid_axes(fig)
    titles = [ax.get_title() for ax in axes]
    assert len(titles) == 6 and len(colorbars(fig)) == 2
    assert titles[0] == "input"
    assert titles[1].startswith("before\ncat (") and titles[2].startswith("after\ncat (")
    assert fig._suptitle.get_text() == "saliency"
    grads = [ak.explain(m, inputs, 0, method="saliency").values for m in (tiny, other)]
    np.testing.assert_allclose(cell(axes[5]), render(grads[1][1], to_display(inputs)[1]), atol=1e-5)


def test_show_panels_draws_flashtorch_four_panels(tiny, inputs):
    fig = ak.show_panels(tiny, inputs, method="saliency", target=2, class_names=["cat", "dog", "owl"])
    axes = np.array(fig.axes).reshape(2, 4)
    assert [ax.get_title() for ax in axes[0]] == ["input image", "gradients (RGB)", "max gradients",
                                                  "overlay"]
    grads = ak.explain(tiny, inputs, 2, method="saliency", abs=False).values
    np.testing.assert_allclose(cell(axes[1, 1]), standardize_rgb(grads[1]), atol=1e-5)
    np.testing.assert_allclose(cell(axes[1, 2]), render(grads[1], mode="heat_map", channels="max"), atol=1e-5)
    assert axes[0, 0].get_ylabel().startswith("owl (")
    assert (tiny.training, all(p.grad is None for p in tiny.parameters())) == (False, True)


def test_save_writes_figures_and_pixel_exact_arrays(tmp_path):
    rgb = render(np.random.default_rng(0).random((1, 5, 7)), mode="heat_map")
    path = ak.save(rgb, tmp_path / "sub" / "map")
    assert path.name == "map.png" and imread(path).shape[:2] == (5, 7)
    np.testing.assert_allclose(imread(path)[..., :3], rgb, atol=1 / 255)
    fig = ak.show(np.ones((1, 1, 4, 4)))
    assert imread(ak.save(fig, tmp_path / "fig.png")).ndim == 3


def test_cli_explain_writes_a_png_per_image_and_a_grid(tmp_path, capsys):
    from matplotlib.image import imsave

    from attribkit.cli import main

    imsave(tmp_path / "a.png", np.random.default_rng(0).random((20, 20, 3)))
    imsave(tmp_path / "b.png", np.random.default_rng(1).random((20, 20, 3)))
    code = main(["explain", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model",
                 "tests.test_viz:Tiny", "--size", "16", "--mode", "masked_image", "--sign", "positive",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert imread(tmp_path / "out" / "a_saliency.png").shape[:2] == (16, 16)
    assert (tmp_path / "out" / "b_saliency.npy").exists()
    assert imread(tmp_path / "out" / "grid_saliency.png").ndim == 3
    assert "grid: " in capsys.readouterr().out


# ------------------------------------------------------------------- benchmark plots


def test_plot_speed_bars_and_floor():
    fig = ak.plot_speed({"slow": [30.0, 40.0, 35.0], "fast": 5.0, "mid": 12.0}, floor=4.0)
    ax = fig.axes[0]
    bars = {t.get_text(): p.get_width() for t, p in zip(ax.get_yticklabels(), ax.patches)}
    assert bars == {"slow": 35.0, "mid": 12.0, "fast": 5.0}
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "fast"  # fastest on top
    floor = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(floor) == 1 and floor[0].get_xdata()[0] == 4.0
    assert "floor (4 ms)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_curves_draws_means_and_aucs():
    per_image = np.array([[1.0, 0.5, 0.0], [1.0, 0.7, 0.2]])
    fig = ak.plot_curves({"deletion": {"a": per_image, "b": [1.0, 1.0, 1.0]},
                          "insertion": {"a": [0.0, 1.0, 1.0]}})
    deletion, insertion = fig.axes
    assert deletion.get_title() == "deletion" and insertion.get_title() == "insertion"
    np.testing.assert_allclose(deletion.lines[0].get_ydata(), per_image.mean(0))
    np.testing.assert_allclose(deletion.lines[0].get_xdata(), [0, 0.5, 1])
    labels = [t.get_text() for t in deletion.get_legend().get_texts()]
    assert labels == [f"a (AUC {curve_auc(per_image.mean(0)):.3f})", "b (AUC 1.000)"]
    assert curve_auc([0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert len(ak.plot_curves({"a": [1, 0]}, kind="insertion").axes) == 1


def test_plot_metric_table_colours_best_per_metric():
    table = {"gradcam": {"pointing": 0.9, "deletion AUC": 0.1},
             "saliency": {"pointing": 0.5, "deletion AUC": 0.3},
             "random": {"pointing": 0.1}}
    fig = ak.plot_metric_table(table, higher_is_better={"deletion AUC": False})
    ax = fig.axes[0]
    colours = np.ma.getdata(ax.images[0].get_array())
    mask = np.ma.getmaskarray(ax.images[0].get_array())
    np.testing.assert_allclose(colours[:, 0], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(colours[:2, 1], [1.0, 0.0])  # lower deletion AUC is better
    assert mask[2, 1] and not mask[:2].any()
    assert sorted(t.get_text() for t in ax.texts) == sorted(["0.9", "0.1", "0.5", "0.3", "0.1"])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gradcam", "saliency", "random"]


# ------------------------------------------------------------------------ the gallery


def test_gallery_script_runs_quickly(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "make_gallery.py"
    spec = importlib.util.spec_from_file_location("make_gallery", path)
    gallery = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gallery)
    x, labels, masks = gallery.make_shapes(8, seed=0)
    assert x.shape == (8, 3, 40, 40) and masks.shape == (8, 40, 40)
    # the evidence is where the picture has the class's hue
    for i in range(8):
        colour = x[i, :, masks[i]].mean(1).numpy()
        assert np.abs(gallery.HUES - colour).sum(1).argmin() == labels[i]
    written = gallery.main([str(tmp_path), "--quick", "--methods", "saliency,example.activation_map"])
    names = {p.name for p in written}
    assert {"modes.png", "signs.png", "panels.png", "before_after.png", "speed.png", "curves.png",
            "metrics.png", "compare_gradient.png", "compare_other.png"} <= names
    assert all(imread(p).ndim == 3 for p in written)


def test_an_attribution_shows_itself_in_jupyter():
    import base64
    import io
    import re

    from PIL import Image

    result = Attribution(torch.rand(3, 1, 4, 4), method="gradcam", target=torch.tensor([2, 0, 1]), layer="layer4",
                         input_size=(32, 32))
    page = result._repr_html_()
    assert "<b>gradcam</b>" in page and "layer layer4" in page and "targets 2, 0, 1" in page
    png = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(png))).size == (3 * 64 + 2 * 2, 64)  # three maps side by side
    # without a picture to draw (no image axes), the text alone
    assert "Attribution: <b>x</b>" in Attribution(np.zeros(5), method="x")._repr_html_()
