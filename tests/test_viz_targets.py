"""ak.show draws what a Box / Region target explained: boxes, mask outlines, labels;
several maps per image each on its own image (issue 24, item 5)."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.patches import Rectangle

import attribkit as ak
from attribkit.result import Attribution
from attribkit.viz.overlays import mask_edges

matplotlib.use("Agg")


def _result(rows: int, target, image_index=None) -> Attribution:
    """A result as explain makes it, its meta holding the bound target (no model needed)."""
    values = torch.rand(rows, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    bound = target.bind(rows) if image_index is None else target.expand(rows)[1]
    meta = {"target": bound}
    if image_index is not None:
        meta["image_index"] = image_index
    labels = bound.labels() if bound.labels() is not None else None
    return Attribution(values=values, method="saliency", target=labels, meta=meta)


def _rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_box_outline_and_named_label_on_every_cell():
    boxes = torch.tensor([[2.0, 3.0, 10.0, 12.0], [0.0, 0.0, 5.0, 6.0]])
    result = _result(2, ak.Box(boxes, [1, 2]))
    images = torch.rand(2, 3, 16, 16)
    fig = ak.show(result, images, mode=["original_image", "blended_heat_map"], class_names=["bg", "cat", "dog"])
    axes = np.array(fig.axes).reshape(2, 2)
    for row, (x1, y1, x2, y2), name in ((0, boxes[0], "cat"), (1, boxes[1], "dog")):
        for ax in axes[row]:
            (rect,) = _rectangles(ax)
            # imshow puts pixel centres at integers: a box edge at pixel coordinate x lies at x - 0.5
            assert rect.get_xy() == pytest.approx((float(x1) - 0.5, float(y1) - 0.5))
            assert rect.get_width() == pytest.approx(float(x2 - x1))
            assert rect.get_height() == pytest.approx(float(y2 - y1))
            assert rect.get_fill() is False
            texts = [t.get_text() for t in ax.texts]
            assert texts == [name]


def test_box_label_is_the_number_without_names_and_boxes_scale_to_a_smaller_map():
    result = _result(1, ak.Box([4.0, 4.0, 12.0, 8.0], 7))
    result = dataclasses.replace(result, values=torch.rand(1, 1, 8, 8))  # a map at half the input size
    fig = ak.show(result, torch.rand(1, 3, 16, 16), mode="heat_map")
    ax = fig.axes[0]
    (rect,) = _rectangles(ax)
    assert rect.get_xy() == pytest.approx((3.5, 3.5))  # drawn on the 16-px picture the map is resized to
    assert [t.get_text() for t in ax.texts] == ["7"]
    # without images the map is drawn at its own 8 px: the box is scaled from the input's
    # 16 px (result.input_size) to it, or taken in the map's pixels when the size is unknown
    fig = ak.show(dataclasses.replace(result, input_size=(16, 16)))
    (rect,) = _rectangles(fig.axes[0])
    assert rect.get_xy() == pytest.approx((1.5, 1.5)) and rect.get_width() == pytest.approx(4.0)
    fig = ak.show(result)
    (rect,) = _rectangles(fig.axes[0])
    assert rect.get_width() == pytest.approx(8.0)


def test_mask_outline_follows_the_pixel_edges():
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:8, 5:11] = True  # a 4 x 6 rectangle: its outline has 2 * (4 + 6) unit edges
    result = _result(1, ak.Region(3, mask))
    fig = ak.show(result, torch.rand(1, 3, 16, 16), class_names={3: "road"})
    ax = fig.axes[0]
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segments = np.array(lines.get_segments())
    assert len(segments) == 20
    xs, ys = segments[..., 0] + 0.5, segments[..., 1] + 0.5  # back to pixel-edge coordinates
    assert xs.min() == 5 and xs.max() == 11 and ys.min() == 4 and ys.max() == 8
    assert [t.get_text() for t in ax.texts] == ["road"]
    assert _rectangles(ax) == []


def test_mask_edges_against_a_brute_force_count():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 9)) > 0.5
    padded = np.pad(mask, 1)
    expected = sum(int(padded[i, j] != padded[i + di, j + dj])
                   for i in range(padded.shape[0]) for j in range(padded.shape[1])
                   for di, dj in ((0, 1), (1, 0))
                   if i + di < padded.shape[0] and j + dj < padded.shape[1])
    edges = mask_edges(mask)
    assert len(edges) == expected
    lengths = np.abs(edges[:, 1] - edges[:, 0]).sum(1)
    assert (lengths == 1).all()


def test_region_without_mask_draws_nothing_but_the_row_label():
    fig = ak.show(_result(1, ak.Region(2)), torch.rand(1, 3, 16, 16))
    ax = fig.axes[0]
    assert not ax.collections and not _rectangles(ax) and not ax.texts
    assert ax.get_ylabel() == "class 2"


def test_rows_take_their_image_by_image_index():
    boxes = [torch.tensor([[1.0, 1.0, 6.0, 6.0], [8.0, 8.0, 15.0, 15.0]]), torch.tensor([[2.0, 2.0, 9.0, 9.0]])]
    index = torch.tensor([0, 0, 1])
    result = _result(2, ak.Box(boxes, [[1, 2], [1]]), image_index=index)
    assert len(result.values) == 2  # _result bound 2 images; make it the 3 rows explain gives
    result = dataclasses.replace(result, values=torch.rand(3, 1, 16, 16))
    images = torch.stack([torch.zeros(3, 16, 16), torch.ones(3, 16, 16)])
    fig = ak.show(result, images, mode="original_image")
    axes = fig.axes
    shown = [ax.images[0].get_array() for ax in axes]
    assert np.allclose(shown[0], 0) and np.allclose(shown[1], 0) and np.allclose(shown[2], 1)
    assert [_rectangles(ax)[0].get_xy() for ax in axes] == [(0.5, 0.5), (7.5, 7.5), (1.5, 1.5)]
    assert [ax.texts[0].get_text() for ax in axes] == ["1", "2", "1"]
    with pytest.raises(ValueError, match="image_index"):
        ak.show(result, images[:1])


def test_explain_then_show_with_a_region_and_labels():
    torch.manual_seed(0)
    segmenter = torch.nn.Conv2d(3, 4, 3, padding=1)  # (B, 4, H, W) logits: a segmentation model
    x = torch.rand(2, 3, 12, 12)
    mask = torch.zeros(12, 12)
    mask[2:5, 3:9] = 1
    result = ak.explain(segmenter, x, ak.Region([1, 3], mask), method="saliency")
    fig = ak.show(result, x, class_names=["a", "b", "c", "d"])
    assert [ax.texts[0].get_text() for ax in fig.axes] == ["b", "d"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["b", "d"]
    assert all(len(ax.collections[0].get_segments()) == 18 for ax in fig.axes)


def test_compare_models_outlines_the_region_in_every_column():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 12, 12)
    mask = torch.zeros(12, 12)
    mask[2:6, 3:9] = 1
    segmenters = {"a": torch.nn.Conv2d(3, 4, 3, padding=1), "b": torch.nn.Conv2d(3, 4, 1)}
    fig = ak.compare_models(segmenters, x, "saliency", ak.Region(1, mask), show_image=False, colorbar=False)
    drawn = [ax for ax in fig.axes if ax.collections]
    assert len(drawn) == 2 and all(len(ax.collections[0].get_segments()) == 20 for ax in drawn)
