"""Resuming with changed data: one image's pixels, a label or a file of a folder changed is
refused naming the item (a digest per item recorded beside each batch's marker);
verify_inputs=False keeps the stored batches; unchanged data resumes as before."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

import attribkit as ak
from attribkit.datasets.fingerprint import item_digests
from attribkit.datasets.items import Batch
from attribkit.errors import InvalidOptionError, StoreError
from tests.dataset_support import Numbered, image, small_model


def changed(monkeypatch, index, what="pixel"):
    """``Numbered`` (the same class: the same data fingerprint) with item ``index``'s image
    or label altered."""
    original = Numbered.__getitem__

    def getitem(self, i):
        picture, label = original(self, i)
        if i == index and what == "pixel":
            picture = picture.clone()
            picture[1, 3, 5] += 0.25
        if i == index and what == "label":
            label = (label + 1) % 5
        return picture, label

    monkeypatch.setattr(Numbered, "__getitem__", getitem)


def run(data, out, **kwargs):
    kwargs.setdefault("progress", False)
    return ak.explain_dataset(small_model(), data, ["saliency"], out, batch_size=4, **kwargs)


def half_done(out, n=10):
    """A store of ``n`` items whose last batch is not stored."""
    import zarr

    run(Numbered(n), out)
    zarr.open_group(out, mode="r+")["done"][2] = False


@pytest.mark.parametrize("what", ["pixel", "label"])
def test_a_changed_item_of_a_stored_batch_is_refused_by_name(tmp_path, monkeypatch, what):
    out = tmp_path / "run.zarr"
    half_done(out)
    changed(monkeypatch, 5, what)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match=r"item 5 of the data is not the one stored in .*run\.zarr.*batch 1 .*"
                                         r"verify_inputs=False"):
        run(Numbered(10), out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp  # nothing written
    assert ak.open_store(out).runs[-1]["images"] == 10  # no record for a refused call
    resumed = run(Numbered(10), out, verify_inputs=False)  # the caller's choice: kept as stored
    assert resumed.complete and resumed.runs[-1]["images"] == 2


def test_a_changed_item_of_a_batch_still_to_compute_is_no_change(tmp_path, monkeypatch):
    out = tmp_path / "run.zarr"
    half_done(out)
    changed(monkeypatch, 9)
    assert run(Numbered(10), out).runs[-1]["images"] == 2  # item 9 was never stored


def test_unchanged_data_resumes_also_with_workers_and_a_tensor_dataset(tmp_path):
    x = torch.stack([image(i) for i in range(10)])
    labels = torch.arange(10) % 5
    out = tmp_path / "run.zarr"
    run(torch.utils.data.TensorDataset(x, labels), out)
    again = run(torch.utils.data.TensorDataset(x, labels), out, num_workers=2)
    assert again.runs[-1]["images"] == 0
    x[7, 0, 0, 0] += 1
    with pytest.raises(StoreError, match="item 7 of the data"):
        run(torch.utils.data.TensorDataset(x, labels), out, num_workers=2)


def test_a_changed_file_of_an_image_folder_is_named(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "images" / name / f"{i}.png")
    out = tmp_path / "run.zarr"
    run(ak.image_folder(tmp_path / "images", 16), out)
    picture = np.array(Image.open(tmp_path / "images" / "b" / "1.png"))
    picture[4, 4] = 255 - picture[4, 4]
    Image.fromarray(picture).save(tmp_path / "images" / "b" / "1.png")
    with pytest.raises(StoreError, match=r"item 4 \(b/1\.png\) of the data is not the one stored"):
        run(ak.image_folder(tmp_path / "images", 16), out)


def test_item_digests_equal_sha1_of_the_bytes():
    """The digest of a row, against hashlib on the same bytes written out by hand."""
    images = torch.stack([image(0), image(1)])
    batch = Batch(number=0, start=0, size=3, images=images, readable=np.array([True, False, True]),
                  labels=np.array([2, -1, 4]), errors=["", "broken file", ""])
    first = hashlib.sha1()
    first.update(b"image torch.float32 (3, 16, 16)\0")
    first.update(images[0].numpy().tobytes())
    first.update(b"\0label 2")
    skipped = hashlib.sha1(b"unreadable\0broken file")
    assert item_digests(batch)[:2] == [first.hexdigest()[:16], skipped.hexdigest()[:16]]


def test_verify_inputs_must_be_a_bool(tmp_path):
    with pytest.raises(InvalidOptionError, match="verify_inputs is True or False"):
        run(Numbered(4), tmp_path / "run.zarr", verify_inputs="no")
