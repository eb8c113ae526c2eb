"""A damaged store: metadata edited or truncated (a StoreError naming the file and key,
on open and on resume), chunks truncated, altered or removed (verify() names them,
resume computes their batch again), markers and records damaged, stores from before
the records."""

import json
import shutil

import numpy as np
import pytest
import zarr

import attribkit as ak
from attribkit.datasets.resume import StoreRepairWarning
from attribkit.datasets.store import verify_path
from attribkit.datasets.verify import StoreHealth
from attribkit.errors import AttribkitError, StoreError
from tests.dataset_support import Numbered, small_model

METHODS = ["saliency", "gradcam"]


def run(out, n=10, **kwargs):
    kwargs.setdefault("progress", False)
    return ak.explain_dataset(small_model(), Numbered(n), METHODS, out, batch_size=4, **kwargs)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A complete store of 10 items in batches of 4 (3 batches), copied by each test."""
    out = tmp_path_factory.mktemp("pristine") / "run.zarr"
    run(out)
    return out


@pytest.fixture
def out(pristine, tmp_path):
    copy = tmp_path / "run.zarr"
    shutil.copytree(pristine, copy)
    return copy


def edit_meta(out, change):
    path = out / "zarr.json"
    document = json.loads(path.read_text())
    change(document["attributes"]["attribkit"])
    path.write_text(json.dumps(document))


def refused_on_open_and_resume(out, match):
    with pytest.raises(StoreError, match=match) as opened:
        ak.open_store(out)
    with pytest.raises(StoreError, match=match):
        run(out)
    health = verify_path(out)
    assert not health.ok and len(health.problems) == 1 and "zarr.json" in health.problems[0]
    return str(opened.value)


# ------------------------------------------------------------------ metadata


def test_a_truncated_zarr_json_names_the_file(out):
    text = (out / "zarr.json").read_text()
    (out / "zarr.json").write_text(text[:len(text) // 2])
    message = refused_on_open_and_resume(out, r"run\.zarr/zarr\.json is not valid JSON \(it ends early")
    assert "\n" not in message


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update(settings="a string"), r"attributes\.attribkit\.settings is a string .*expected an object"),
    (lambda m: m.update(layers=None), r"attributes\.attribkit\.layers is null.*expected an object"),
    (lambda m: m["settings"].update(batch_size="4"), r"settings\.batch_size is a string .*positive integer"),
    (lambda m: m["settings"].update(batch_size=0), r"settings\.batch_size is an integer \(0\)"),
    (lambda m: m["settings"].pop("methods"), r"settings\.methods is null.*non-empty list"),
    (lambda m: m["settings"]["data"].update(items=[1]), r"settings\.data\.items is a list"),
    (lambda m: m.update(runs={"images": 1}), r"attributes\.attribkit\.runs is an object"),
    (lambda m: m.update(classes=[1, 2]), r"attributes\.attribkit\.classes is a list"),
])
def test_edited_metadata_names_the_key(out, change, match):
    edit_meta(out, change)
    refused_on_open_and_resume(out, match)


def test_more_items_than_the_arrays_have_is_refused(out):
    edit_meta(out, lambda m: m["settings"]["data"].update(items=12))
    with pytest.raises(StoreError, match=r"ids/zarr\.json: the array has shape \[10\].*12 rows"):
        ak.open_store(out)


def test_a_damaged_array_metadata_names_its_file(out):
    path = out / "maps" / "gradcam" / "zarr.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(StoreError, match=r"maps/gradcam/zarr\.json is not valid JSON"):
        ak.open_store(out)
    path.unlink()
    with pytest.raises(StoreError, match=r"maps/gradcam/zarr\.json is missing"):
        run(out)


# ------------------------------------------------------------------ chunks


def chunk(out, key, batch):
    return next((out / key / "c").glob(f"{batch}*")) if (out / key / "c" / str(batch)).is_file() else \
        out / key / "c" / str(batch) / "0" / "0" / "0"


def test_a_healthy_store_verifies(out):
    health = ak.open_store(out).verify()
    assert isinstance(health, StoreHealth) and health.ok and health.problems == []
    assert (health.images, health.images_done, health.batches, health.batches_verified) == (10, 10, 3, 3)
    assert json.loads(json.dumps(health.to_dict()))["ok"] is True
    assert "images stored: 10 of 10" in health.summary() and "3 verified" in health.summary()


def test_a_truncated_chunk_is_found_and_its_batch_computed_again(out, pristine):
    path = chunk(out, "maps/saliency", 1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError):  # what zarr does with it: the damage is real
        np.asarray(ak.open_store(out)["saliency"])
    health = ak.open_store(out).verify()
    assert not health.ok and health.damaged == [1]
    assert health.problems == [f"batch 1 (items 4-7): maps/saliency chunk c/1/0/0/0 is 100 bytes, "
                               f"{4 * 3 * 16 * 16 * 4} were written (truncated or overwritten)"]
    with pytest.warns(StoreRepairWarning, match=r"1 stored batch is damaged and computed again: batch 1 "
                                                r"\(items 4-7\): maps/saliency"):
        resumed = run(out)
    assert resumed.runs[-1]["images"] == 4 and resumed.runs[-1]["recomputed"] == [1]
    assert resumed.verify().ok
    for method in METHODS:
        np.testing.assert_array_equal(np.asarray(resumed[method]), np.asarray(ak.open_store(pristine)[method]))


def test_altered_bytes_of_the_same_size_fail_the_checksum(out):
    path = chunk(out, "maps/gradcam", 2)
    payload = bytearray(path.read_bytes())
    payload[8] ^= 0xFF
    path.write_bytes(bytes(payload))
    health = ak.open_store(out).verify()
    assert health.problems == ["batch 2 (items 8-9): maps/gradcam chunk c/2/0/0/0 has the size written but "
                               "other bytes (its checksum differs)"]
    assert ak.open_store(out).verify(checksums=False).ok  # sizes only: what a resume checks


def test_a_missing_chunk_and_a_damaged_marker_and_record(out, pristine):
    chunk(out, "scores", 0).unlink()
    marker = out / "done" / "c" / "2"
    marker.write_bytes(b"\x00garbage")
    record = out / "integrity" / "c" / "1"
    record.write_bytes(record.read_bytes()[:5])
    health = ak.open_store(out).verify()
    assert health.damaged == [0, 1, 2]
    assert health.problems[0].startswith("batch 0 (items 0-3): scores chunk c/0 is missing")
    assert health.problems[1] == "batch 1 (items 4-7): its record (integrity) cannot be read"
    assert health.problems[2] == "batch 2 (items 8-9): its completion marker cannot be read"
    assert health.batches_done == 2 and health.images_done == 8
    with pytest.warns(StoreRepairWarning, match="2 stored batches are damaged"):  # the marker: not stored
        resumed = run(out)
    assert resumed.runs[-1]["images"] == 10 and resumed.verify().ok
    np.testing.assert_array_equal(resumed.predictions.scores, ak.open_store(pristine).predictions.scores)


def test_a_store_from_before_the_records_resumes_and_is_read_through_zarr(out):
    shutil.rmtree(out / "integrity")
    health = ak.open_store(out).verify()
    assert health.ok and health.batches_unrecorded == 3 and health.batches_verified == 0
    path = chunk(out, "maps/saliency", 0)
    path.write_bytes(path.read_bytes()[:10])
    health = ak.open_store(out).verify()
    assert health.damaged == [0] and "maps/saliency: its chunk cannot be read" in health.problems[0]
    group = zarr.open_group(out, mode="r+")
    group["done"][1] = False
    assert run(out).runs[-1]["images"] == 4  # batch 1 again, now with a record
    again = ak.open_store(out)
    assert isinstance(again.records()[1], dict) and again.records()[0] is None


def test_a_path_that_is_no_store_is_reported_not_raised(tmp_path):
    health = verify_path(tmp_path / "nothing.zarr")
    assert not health.ok and "does not exist" in health.problems[0]
    with pytest.raises(StoreError, match="does not exist") as caught:
        ak.open_store(tmp_path / "nothing.zarr")
    assert isinstance(caught.value, AttribkitError) and isinstance(caught.value, ValueError)
