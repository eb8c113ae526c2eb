"""The store report outlines each picture's target box or region with the explained class
(issue 24, item 5): the drawing checked pixel by pixel against a brute-force loop, and
the written page read back."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import attribkit as ak
from attribkit.report.marks import MARK_RGB, RowMarks, draw, nearest
from tests.test_datasets_targets import BOXES, LABELS, Items, TinyDetector, segmenter

pytest.importorskip("zarr")
GREY = np.full((32, 32, 3), 0.5, dtype=np.float32)
MARK = np.array(MARK_RGB) / 255.0


def _marked(picture: np.ndarray) -> np.ndarray:
    return np.isclose(picture, MARK, atol=1e-6).all(-1)


def test_a_box_is_outlined_on_its_pixels_and_nothing_else_changes():
    drawn = draw(GREY, RowMarks((4.0, 6.0, 20.0, 15.0), None, ""))
    expected = np.zeros((32, 32), bool)
    for y in range(32):
        for x in range(32):
            inside = 4 <= x <= 19 and 6 <= y <= 14
            expected[y, x] = inside and (x in (4, 5, 18, 19) or y in (6, 7, 13, 14))  # 2 px, inward
    np.testing.assert_array_equal(_marked(drawn), expected)
    assert np.allclose(drawn[~expected], 128 / 255)  # the rest: the grey picture (as 8-bit)
    assert np.allclose(GREY, 0.5)  # the caller's picture is untouched


def test_a_region_is_outlined_where_a_pixel_is_two_steps_from_outside():
    mask = np.zeros((32, 32), bool)
    mask[5:12, 8:20] = True
    mask[12:18, 8:11] = True  # an L shape
    drawn = draw(GREY, RowMarks(None, mask, ""))
    expected = np.zeros_like(mask)
    for y, x in zip(*np.nonzero(mask)):
        near = [(y + dy, x + dx) for dy in range(-2, 3) for dx in range(-2, 3) if abs(dy) + abs(dx) <= 2]
        expected[y, x] = any(not (0 <= a < 32 and 0 <= b < 32) or not mask[a, b] for a, b in near)
    np.testing.assert_array_equal(_marked(drawn), expected)


def test_the_label_is_written_on_a_tag_above_the_box_or_inside_it_at_the_top():
    plain = draw(GREY, RowMarks((4.0, 6.0, 30.0, 30.0), None, ""))
    named = draw(GREY, RowMarks((4.0, 6.0, 30.0, 30.0), None, "cat"))
    changed = np.nonzero((np.abs(named - plain) > 1e-6).any(-1))
    assert changed[0].min() >= 6 and changed[1].min() >= 4  # no room above: inside, from the corner
    assert len(changed[0]) > 20  # the tag and its letters
    plain = draw(GREY, RowMarks((4.0, 20.0, 30.0, 30.0), None, ""))
    named = draw(GREY, RowMarks((4.0, 20.0, 30.0, 30.0), None, "cat"))
    changed = np.nonzero((np.abs(named - plain) > 1e-6).any(-1))
    assert changed[0].max() < 20 and changed[1].min() >= 1  # on top of the box's upper edge


def test_nearest_resizes_a_stored_mask_to_the_picture():
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = True
    big = nearest(mask, 8)
    assert big.sum() == 4 and big[2:4, 4:6].all()


def _data(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def _pictures(text: str) -> list[np.ndarray]:
    uris = re.findall(r'<img class="picture" src="data:image/jpeg;base64,([^"]+)"', text)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u))), dtype=np.float32) / 255 for u in uris]


def test_report_of_a_box_store_draws_each_box_with_its_class(tmp_path):
    data = Items(lambda x, i: (x * 0 + 0.5, ak.Box(BOXES[i], int(LABELS[i]))))  # grey pictures
    store = ak.explain_dataset(TinyDetector(), data, ["saliency"], tmp_path / "run.zarr", batch_size=2,
                               progress=False)
    out = ak.write_report(store, tmp_path / "run.html", images=data, size=64,
                          model_classes=["background", "cat", "dog"])
    text = out.read_text()
    rows = _data(text)["rows"]
    scale = 64 / 16
    for row, box, label in zip(rows, BOXES.tolist(), LABELS.tolist()):
        assert row["box"] == pytest.approx([v * scale for v in box])
        assert f"explained box ({box[0]:.0f}, {box[1]:.0f}, {box[2]:.0f}, {box[3]:.0f})" in row["facts"]
        assert f"explained class {['background', 'cat', 'dog'][label]}" in row["facts"]
    pictures = _pictures(text)
    assert len(pictures) == len(BOXES)
    for picture, box in zip(pictures, BOXES.tolist()):
        x1, y1, x2, y2 = (int(v * scale) for v in box)
        bottom = picture[y2 - 2:y2, (x1 + x2) // 2].mean(0)  # the bottom edge, away from the label's tag
        assert np.abs(bottom - MARK).max() < 0.2, bottom
        assert np.abs(picture[(y1 + y2) // 2 + 3, (x1 + x2) // 2] - 0.5).max() < 0.1  # inside: grey
    assert "outlines what its maps explain" in text


def test_report_of_a_region_store_outlines_the_mask_and_a_store_without_targets_is_unchanged(tmp_path):
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:12, 2:8] = True
    data = Items(lambda x, i: (x * 0 + 0.5, ak.Region(1, mask)))
    store = ak.explain_dataset(segmenter(), data, ["saliency"], tmp_path / "run.zarr", batch_size=2,
                               progress=False)
    text = ak.write_report(store, tmp_path / "run.html", images=data, size=64).read_text()
    row = _data(text)["rows"][0]
    assert "explained region outlined" in row["facts"] and "box" not in row
    picture = _pictures(text)[0]
    assert np.abs(picture[40, 8:10].mean(0) - MARK).max() < 0.2  # the left edge: columns 2 * 4 = 8, 9
    assert np.abs(picture[42, 20] - 0.5).max() < 0.1  # inside, below the label's tag
    classifier = torch.nn.Sequential(segmenter(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    plain = ak.explain_dataset(classifier, torch.utils.data.TensorDataset(torch.full((2, 3, 16, 16), 0.5)),
                               ["saliency"], tmp_path / "plain.zarr", target=1, progress=False)
    text = ak.write_report(plain, tmp_path / "plain.html", images=torch.full((2, 3, 16, 16), 0.5),
                           size=64).read_text()
    assert "outlines what" not in text and "box" not in _data(text)["rows"][0]
