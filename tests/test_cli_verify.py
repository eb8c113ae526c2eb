"""``attribkit verify RUN``: a sound store exits 0, a damaged one 1 naming the damage, a path
that is no store is a one-line error (exit 2) (issue 23)."""

import json

import pytest

import attribkit as ak
from attribkit.cli import main
from tests.dataset_support import Numbered, small_model

pytest.importorskip("zarr")


@pytest.fixture
def store(tmp_path):
    return ak.explain_dataset(small_model(), Numbered(6), ["saliency"], tmp_path / "run.zarr", batch_size=3,
                              progress=False)


def test_a_sound_store_is_ok(store, capsys):
    assert main(["verify", str(store.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{store.path}: ok"
    assert "images stored: 6 of 6" in lines
    assert main(["verify", str(store.path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == [] and report["images_done"] == 6


def test_a_truncated_chunk_exits_1_and_is_named(store, capsys):
    chunks = sorted(p for p in (store.path / "maps" / "saliency").rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(chunks) == 2  # one chunk per batch of 3
    chunks[1].write_bytes(chunks[1].read_bytes()[:10])
    for flags in ([], ["--sizes-only"]):
        assert main(["verify", str(store.path), *flags]) == 1
        out = capsys.readouterr().out
        assert out.splitlines()[0] == f"{store.path}: 1 problem"
        assert "problem: batch 1" in out and "saliency" in out
    assert main(["verify", str(store.path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["damaged"] == [1]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.zarr", "no such store: {path}"),
    (lambda tmp: tmp, "{path} is not a dataset store (it has no zarr.json"),
])
def test_a_path_that_is_no_store_is_one_line(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["verify", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith("attribkit: error: " + message.format(path=path))
