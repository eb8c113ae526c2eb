"""bench --data digits: real handwriting on cluttered canvases with known boxes, and summary.json."""

import json

import numpy as np
import pytest
import torch

from attribkit.bench.digits import TRAIN_DIGITS, DigitsTrainConfig, fit_digits, make_digits
from attribkit.bench.runner import write_summary

sklearn = pytest.importorskip("sklearn")  # load_digits ships the data (not yet a declared dependency)


def test_canvases_hold_one_whole_digit_in_its_box():
    data = make_digits(12, size=48, digit=20, seed=3)
    assert data.images.shape == (12, 3, 48, 48) and data.images.dtype == np.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert data.masks.shape == (12, 48, 48) and (data.masks.sum((1, 2)) == 400).all()  # 20x20 boxes
    inside = (data.images[:, 0] * data.masks).sum((1, 2)) / 400
    outside = (data.images[:, 0] * ~data.masks).sum((1, 2)) / (48 * 48 - 400)
    assert (inside > outside).all()  # the digit's ink is in its box, clutter is sparser
    again = make_digits(12, size=48, digit=20, seed=3)
    assert np.array_equal(again.images, data.images) and np.array_equal(again.labels, data.labels)
    assert set(make_digits(200, seed=0, split="train").labels) == set(range(10))


def test_train_and_test_digits_are_disjoint_rows_and_a_tiny_fit_is_reproducible():
    """(The default model, 4,000 canvases x 8 epochs, reached test accuracy 0.958 in 49 s
    on one thread; too long for the suite.)"""
    from sklearn.datasets import load_digits

    assert 0 < TRAIN_DIGITS < len(load_digits().images)
    tiny = DigitsTrainConfig(size=32, digit=20, n_train=128, n_test=64, epochs=1, batch=32, width=8)
    model, record = fit_digits(tiny)
    again, _ = fit_digits(tiny)
    assert 0 <= record["test_accuracy"] <= 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_summary_json(tmp_path):
    records = [{"method": "gradcam", "metric": "pointing_game", "mean": 0.75},
               {"method": "gradcam", "metric": "speed", "ratio": 1.4},
               {"method": "random", "metric": "auc", "error": "boom"}]
    path = write_summary(records, tmp_path)
    assert json.loads(path.read_text()) == {"gradcam": {"pointing_game": 0.75, "speed": 1.4}}
