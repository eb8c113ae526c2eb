"""attribkit explain-dataset: image folders, a SIGKILL in the middle, two processes under torchrun."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import attribkit as ak
from attribkit.cli import main
from tests.dataset_support import Numbered, small_model

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tests.dataset_support:small_model"


def make_folder(root: Path, classes=("cat", "dog"), per_class=5, size=20) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_a_folder_with_class_folders(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = make_folder(tmp_path / "images")
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "dog" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "run.zarr"
    code = main(["explain-dataset", str(folder), "--model", MODEL, "--methods", "saliency", "gradcam",
                 "--metrics", "deletion_auc", "--size", "16", "--batch-size", "4", "--target", "label",
                 "--method-option", "gradcam.relu=false", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "img/s" in captured.err and "11/11" in captured.err  # tqdm's bar, stderr not a terminal
    assert "skipped cat/notes.txt: not an image file (.txt)" in captured.err
    assert "skipped dog/broken.png: cannot read image" in captured.err
    last = captured.out.strip().splitlines()[-1]
    assert last.startswith("11 images in ") and "images/s" in last and last.endswith(str(out))
    store = ak.open_store(out)
    assert store.class_names == ["cat", "dog"]
    ids = list(store.ids)
    assert ids[:5] == [f"cat/{i}.png" for i in range(5)] and "dog/broken.png" in ids
    labels = store.labels
    np.testing.assert_array_equal(labels[:5], 0)
    np.testing.assert_array_equal(store.targets[labels >= 0], labels[labels >= 0])
    assert store.settings["options"]["gradcam"]["relu"] is False
    # the same maps as explain on the same images
    from attribkit.images import load_image, to_input

    readable = [i for i, name in enumerate(ids) if name != "dog/broken.png"]
    x = to_input([load_image(folder / ids[i]) for i in readable], 16)
    expected = ak.explain(small_model(), x, torch.as_tensor(labels[readable]), method="gradcam", relu=False)
    np.testing.assert_allclose(np.asarray(store["gradcam"])[readable], expected.numpy(), rtol=1e-5, atol=1e-6)


def test_strict_and_a_flat_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / f"{i}.jpg")
    (folder / "readme.md").write_text("hello")
    args = ["explain-dataset", str(folder), "--model", MODEL, "--methods", "saliency", "--size", "16",
            "--no-progress"]
    assert main([*args, "--strict", "--out", str(tmp_path / "strict.zarr")]) == 2
    assert "readme.md: not an image file" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "run.zarr")]) == 0
    err = capsys.readouterr().err
    assert "img/s" not in err
    store = ak.open_store(tmp_path / "run.zarr")
    assert store.labels is None and list(store.ids) == ["0.jpg", "1.jpg", "2.jpg"]
    assert main([*args, "--out", str(tmp_path / "run.zarr"), "--methods", "gradcam"]) == 2
    assert "holds the results of another run" in capsys.readouterr().err


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=300)


RUN = """
import attribkit as ak
from tests.dataset_support import Numbered, small_model
ak.explain_dataset(small_model(), Numbered(12), ["saliency", "gradcam"], {out!r}, batch_size=2,
                   metrics=["deletion_auc"], metric_options={{"deletion_auc": {{"steps": 4}}}}, progress=False)
"""


def test_a_run_killed_in_the_middle_resumes_to_the_uninterrupted_result(tmp_path):
    out = tmp_path / "run.zarr"
    killed = _python(RUN.format(out=str(out)), KILL_AT="9")
    assert killed.returncode == -9, killed.stderr
    damaged = ak.open_store(out)
    stored = int(damaged.done.sum())
    assert 0 < stored < 12 and not damaged.complete
    chunks = out / "maps" / "saliency" / "c"  # chunk b of a (N, C, H, W) array: c/b/0/0/0
    stored_batches = np.flatnonzero(damaged.batches_done)
    before = {p: p.stat().st_mtime_ns for b in stored_batches for p in (chunks / str(b)).rglob("*") if p.is_file()}
    assert len(before) == len(stored_batches)
    resumed = ak.explain_dataset(small_model(), Numbered(12), ["saliency", "gradcam"], out, batch_size=2,
                                 metrics=["deletion_auc"], metric_options={"deletion_auc": {"steps": 4}},
                                 progress=False)
    assert resumed.complete and resumed.runs[-1]["images"] == 12 - stored
    assert sorted(resumed.ids.tolist()) == list(range(12))
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # nothing stored was written again
    full = ak.explain_dataset(small_model(), Numbered(12), ["saliency", "gradcam"], tmp_path / "full.zarr",
                              batch_size=2, metrics=["deletion_auc"],
                              metric_options={"deletion_auc": {"steps": 4}}, progress=False)
    for method in ("saliency", "gradcam"):
        np.testing.assert_allclose(np.asarray(resumed[method]), np.asarray(full[method]), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(resumed.metrics[method]["deletion_auc"], full.metrics[method]["deletion_auc"],
                                   rtol=1e-5)


def test_torchrun_with_two_processes_equals_one(tmp_path):
    folder = make_folder(tmp_path / "images", per_class=7)
    args = ["explain-dataset", str(folder), "--model", MODEL, "--methods", "saliency", "gradcam",
            "--metrics", "insertion_auc", "--size", "16", "--batch-size", "3", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "attribkit.cli", *args, "--out", str(tmp_path / "one.zarr")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "attribkit.cli", *args,
                          "--out", str(tmp_path / "two.zarr")],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count(" images in ") == 1 and "2 processes" in two.stdout  # rank 0's summary only
    a, b = ak.open_store(tmp_path / "one.zarr"), ak.open_store(tmp_path / "two.zarr")
    assert b.complete and b.runs[-1]["processes"] == 2 and b.runs[-1]["images"] == 14
    assert b.ids.tolist() == a.ids.tolist() and len(set(b.ids.tolist())) == 14
    for method in ("saliency", "gradcam"):
        np.testing.assert_array_equal(np.asarray(a[method]), np.asarray(b[method]))
        np.testing.assert_array_equal(a.metrics[method]["insertion_auc"], b.metrics[method]["insertion_auc"])
    np.testing.assert_array_equal(a.predictions.classes, b.predictions.classes)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_a_missing_folder(tmp_path, capsys):
    assert main(["explain-dataset", str(tmp_path / "nope"), "--model", MODEL, "--methods", "saliency",
                 "--out", str(tmp_path / "run.zarr")]) == 2
    assert "is not a folder of images" in capsys.readouterr().err


def test_dtype_and_compressor_options(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = make_folder(tmp_path / "images", per_class=2)
    out = tmp_path / "run.zarr"
    args = ["explain-dataset", str(folder), "--model", MODEL, "--methods", "saliency", "--size", "16",
            "--no-progress"]
    assert main([*args, "--dtype", "float16", "--compressor", "blosc-lz4", "--out", str(out)]) == 0
    store = ak.open_store(out)
    assert store["saliency"].dtype == np.float16 and store.settings["compressor"] == "blosc-lz4"
    capsys.readouterr()
    assert main([*args, "--dtype", "bfloat16", "--out", str(tmp_path / "bf.zarr")]) == 2
    err = capsys.readouterr().err
    assert "bfloat16" in err and "cannot store" in err and "Traceback" not in err
    assert main([*args, "--compressor", "lzma", "--out", str(tmp_path / "lz.zarr")]) == 2
    assert "compressor='lzma'" in capsys.readouterr().err
    assert not (tmp_path / "bf.zarr").exists() and not (tmp_path / "lz.zarr").exists()


def test_a_changed_image_is_refused_on_resume_unless_no_verify_inputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = make_folder(tmp_path / "images", per_class=3)
    out = tmp_path / "run.zarr"
    command = ["explain-dataset", str(folder), "--model", MODEL, "--methods", "saliency", "--size", "16",
               "--batch-size", "2", "--no-progress", "--out", str(out)]
    assert main(command) == 0
    store = ak.open_store(out)
    group = __import__("zarr").open_group(out, mode="r+")
    group["done"][2] = False  # the last batch is to compute again, so the run resumes
    pixels = np.asarray(Image.open(folder / "dog" / "0.png")).copy()
    pixels = 255 - pixels
    Image.fromarray(pixels).save(folder / "dog" / "0.png")
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "item 3 (dog/0.png)" in err and "--no-verify-inputs" in err and len(err.strip().splitlines()) == 1
    assert main(command + ["--no-verify-inputs"]) == 0
    assert len(ak.open_store(out)) == len(store)


def test_a_file_name_that_is_not_utf8_is_stored_spelled_and_its_picture_found(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    folder = make_folder(tmp_path / "images", classes=("cat",), per_class=2)
    os.rename(folder / "cat" / "0.png", os.fsdecode(bytes(folder / "cat") + b"/\xff\xfe.png"))
    out = tmp_path / "run.zarr"
    assert main(["explain-dataset", str(folder), "--model", MODEL, "--methods", "saliency", "--size", "16",
                 "--no-progress", "--out", str(out)]) == 0
    ids = list(ak.open_store(out).ids)
    assert sorted(ids) == ["cat/1.png", "cat/\\xff\\xfe.png"]
    from attribkit.datasets.folder import id_path

    assert id_path(folder, "cat/\\xff\\xfe.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")  # no "cannot read" warning: every picture found
        assert main(["report", str(out)]) == 0
