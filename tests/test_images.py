"""Image utilities: loading, model inputs, (de)normalisation, display arrays, class names."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import attribkit as ak
from attribkit.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassIndex,
    as_batch,
    denormalize,
    load_image,
    normalize,
    to_display,
    to_input,
)


def test_denormalize_inverts_normalize_in_every_layout():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 7)
    z = normalize(x)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(z, (x - mean) / std)
    torch.testing.assert_close(denormalize(z), x)
    torch.testing.assert_close(denormalize(normalize(x[0])), x[0])          # (3, H, W)
    hwc = x[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(denormalize(normalize(hwc)), hwc, atol=1e-6)  # (H, W, 3) array
    np.testing.assert_allclose(normalize(hwc)[1, 2], (hwc[1, 2] - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-5)
    custom = normalize(x, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    torch.testing.assert_close(custom, (x - 0.5) / 0.25)
    torch.testing.assert_close(denormalize(custom, (0.5,) * 3, (0.25,) * 3), x)


def test_load_image_and_to_input(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.shape == (30, 40, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-6)

    x = to_input(image, size=16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    # white in -> (1 - mean) / std out, whatever the resizing did
    white = to_input(np.ones((20, 30, 3), np.float32), size=8)
    torch.testing.assert_close(denormalize(white), torch.ones(1, 3, 8, 8))
    # no resizing: exactly the normalised picture; a list is a batch; paths and uint8 work
    exact = to_input([image, pixels, tmp_path / "a.png"], size=None)
    assert exact.shape == (3, 3, 30, 40)
    torch.testing.assert_close(exact[0], exact[1])
    torch.testing.assert_close(exact[0], exact[2])
    torch.testing.assert_close(denormalize(exact[0]), torch.from_numpy(image).permute(2, 0, 1))
    # centre crop: resize the short side to 16*256/224 = 18, keep the middle 16
    wide = np.zeros((10, 40, 3), np.float32)
    wide[:, 18:22] = 1.0  # a bright vertical bar in the middle
    out = denormalize(to_input(wide, size=16))[0, 0]
    assert out.shape == (16, 16) and out[:, 7:9].min() > 0.5 and out[:, :2].max() < 0.05
    assert to_input(torch.rand(2, 3, 12, 12), size=8).shape == (2, 3, 8, 8)


def test_as_batch_reads_common_layouts():
    chw = np.random.default_rng(0).random((3, 6, 8))
    hwc = chw.transpose(1, 2, 0)
    for x in (chw, hwc, torch.from_numpy(chw), chw[None], hwc[None]):
        np.testing.assert_array_equal(as_batch(x), chw[None])
    assert as_batch(np.zeros((6, 8))).shape == (1, 1, 6, 8)
    assert as_batch(np.zeros((4, 6, 8)), batched=True).shape == (4, 1, 6, 8)
    assert as_batch(np.zeros((2, 16, 5, 5))).shape == (2, 16, 5, 5)  # many channels: (B, C, H, W)
    with pytest.raises(ValueError, match="shape"):
        as_batch(np.zeros((1, 2, 3, 4, 5)))


def test_to_display_denormalises_and_converts():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 5, 6)
    expected = x.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(to_display(x), expected, atol=1e-6)                  # [0, 1]: as is
    np.testing.assert_allclose(to_display(normalize(x)), expected, atol=1e-6)       # ImageNet: auto
    np.testing.assert_allclose(to_display(normalize(x, (0.5,) * 3, (0.5,) * 3), (0.5,) * 3, (0.5,) * 3),
                               expected, atol=1e-6)
    np.testing.assert_allclose(to_display(expected[0]), expected[:1], atol=1e-6)   # one HWC array
    u8 = (expected * 255).round().astype(np.uint8)
    np.testing.assert_allclose(to_display(u8), u8 / 255.0, atol=1e-6)
    grey = to_display(np.full((4, 4), 0.25))
    assert grey.shape == (1, 4, 4, 3) and np.allclose(grey, 0.25)
    # switching the automatic denormalisation off clips instead
    assert to_display(torch.full((1, 3, 2, 2), -1.0), (0, 0, 0), (1, 1, 1)).max() == 0.0


def test_class_index_fuzzy_lookup():
    index = ClassIndex(["great grey owl", "Golden Retriever", "tabby", "tiger cat", "crane", "crane"])
    assert index[0] == "great grey owl" and len(index) == 6
    assert index["great grey owl"] == 0
    assert index["GREAT  GREY-OWL"] == 0                     # case, spacing, punctuation
    assert index["grat gray owl"] == 0                       # misspelt twice
    assert index["golden retreiver"] == 1
    assert index["owl"] == 0                                 # a word of the name
    assert index["tabby cat"] == 2                           # the name's words in the query
    assert index.indices("crane") == [4, 5]
    with pytest.raises(KeyError, match="several classes"):
        index["crane"]
    with pytest.raises(KeyError, match="ambiguous"):
        ClassIndex(["great white shark", "tiger shark"])["shark"]
    with pytest.raises(KeyError, match="no class called 'zebra'"):
        index["zebra"]
    assert index.search("tiger", n=1)[0][:2] == (3, "tiger cat")
    assert "Tabby" in index and "zebra" not in index


def test_imagenet_index_from_torchvision():
    assert len(ak.imagenet) == 1000
    assert ak.imagenet["great grey owl"] == 24
    assert ak.imagenet["grate gray owl"] == 24
    assert ak.imagenet[24] == "great grey owl"
    assert ak.imagenet["goldfsh"] == 1
    assert ak.imagenet["golden retreiver"] == 207
    from attribkit.images import _import_torchvision_categories, _read_torchvision_categories

    assert _read_torchvision_categories() == _import_torchvision_categories()  # the fast path is right


def test_image_and_viz_modules_import_without_torch():
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, attribkit.images, attribkit.viz\n"
         "assert 'torch' not in sys.modules, 'torch imported'"],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_to_input_without_crop_keeps_the_whole_image():
    from attribkit.images import to_input

    wide = np.zeros((32, 64, 3), np.float32)
    wide[:, :8, 0] = 1.0  # a red strip at the left edge, outside the centre crop
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    cropped = to_input(wide, 32, mean=mean, std=std)
    whole = to_input(wide, 32, crop=False, mean=mean, std=std)
    assert cropped.shape == whole.shape == (1, 3, 32, 32)
    assert float(cropped[0, 0, :, :4].max()) < 0.01  # cut off
    assert float(whole[0, 0, :, :3].min()) > 0.99 and float(whole[0, 0, :, 6:].max()) < 0.01
