"""``attribkit explain`` never overwrites, reads folders, names what it skips; ``explain-dataset``
turns a write failure into one line that says the same command resumes (issue 23)."""

import errno
import os

import numpy as np
import pytest
from matplotlib.image import imsave

from attribkit.cli import main
from attribkit.datasets.folder import IMAGE_EXTENSIONS
from attribkit.demo import make_scene
from attribkit.errors import StoreError

MODEL = ["--model", "tests.test_cli:small_model", "--size", "32"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("attribkit: error: ")
    return err


@pytest.fixture
def scene(tmp_path):
    imsave(tmp_path / "scene.png", make_scene(32))
    return tmp_path / "scene.png"


def test_a_folder_holding_files_is_refused_and_left_as_it_was(scene, tmp_path, capsys):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "scene_saliency.png").write_bytes(b"mine")
    (keep / "notes.txt").write_text("mine too")
    assert main(["explain", str(scene), *MODEL, "--out", str(keep)]) == 2
    err = one_error_line(capsys)
    assert f"--out {keep} is not empty (2 entries: notes.txt, scene_saliency.png)" in err and "--overwrite" in err
    assert sorted(p.name for p in keep.iterdir()) == ["notes.txt", "scene_saliency.png"]
    assert (keep / "scene_saliency.png").read_bytes() == b"mine"
    # --overwrite writes into it, replacing the file of the same name
    assert main(["explain", str(scene), *MODEL, "--out", str(keep), "--overwrite"]) == 0
    assert (keep / "scene_saliency.png").read_bytes()[:4] == b"\x89PNG"
    assert (keep / "notes.txt").read_text() == "mine too"


def test_an_empty_or_new_folder_is_written(scene, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["explain", str(scene), *MODEL, "--out", str(tmp_path / "empty")]) == 0
    assert main(["explain", str(scene), *MODEL, "--out", str(tmp_path / "new" / "deeper")]) == 0
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert sorted(p.name for p in out.iterdir()) == ["grid_saliency.png", "scene_saliency.npy",
                                                         "scene_saliency.png"]


def test_out_naming_a_file_is_one_line(scene, tmp_path, capsys):
    (tmp_path / "afile.txt").write_text("x")
    assert main(["explain", str(scene), *MODEL, "--out", str(tmp_path / "afile.txt")]) == 2
    assert f"--out {tmp_path / 'afile.txt'} is a file, not a folder" in one_error_line(capsys)
    assert (tmp_path / "afile.txt").read_text() == "x"


def test_an_empty_folder_says_it_holds_no_images_and_what_is_read(tmp_path, capsys):
    (tmp_path / "emptydir").mkdir()
    assert main(["explain", str(tmp_path / "emptydir"), *MODEL]) == 2
    err = one_error_line(capsys)
    assert f"{tmp_path / 'emptydir'} holds no images" in err and "no such" not in err
    assert all(ext in err for ext in IMAGE_EXTENSIONS)
    (tmp_path / "emptydir" / "readme.txt").write_text("x")
    assert main(["explain", str(tmp_path / "emptydir"), *MODEL]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"skipped {tmp_path / 'emptydir' / 'readme.txt'}: not an image file (.txt)")
    assert "holds no images (1 other entries skipped)" in err[1]


def test_a_folder_is_explained_and_its_odd_entries_listed(tmp_path, capsys):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name in ("one.png", "two.jpg"):
        imsave(folder / name, make_scene(32))
    (folder / "x.png").mkdir()                          # a folder named like an image
    os.symlink("loop.png", folder / "loop.png")          # a link to itself
    os.symlink("gone.png", folder / "dangling.png")      # a link to nothing
    out = tmp_path / "out"
    assert main(["explain", str(folder), *MODEL, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    skipped = sorted(line for line in captured.err.splitlines() if line.startswith("skipped"))
    link = "a symbolic link that leads nowhere (its target is missing, or it loops)"
    assert skipped == [f"skipped {folder / 'dangling.png'}: {link}", f"skipped {folder / 'loop.png'}: {link}",
                       f"skipped {folder / 'x.png'}: an empty folder, not an image file"]
    assert np.load(out / "one_saliency.npy").shape == np.load(out / "two_saliency.npy").shape == (3, 32, 32)


def test_two_images_that_would_write_one_file_are_refused(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        imsave(tmp_path / folder / "x.png", make_scene(32))
    assert main(["explain", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), *MODEL,
                 "--out", str(tmp_path / "out")]) == 2
    assert "would both be written as x_saliency.png" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_missing_paths_are_one_line(scene, capsys):
    assert main(["explain", "nope.png", str(scene), "gone", *MODEL]) == 2
    assert one_error_line(capsys) == "attribkit: error: no such image file or folder: nope.png, gone\n"


# ------------------------------------------------------------------ explain-dataset


@pytest.mark.parametrize("failure, expected", [
    (OSError(errno.EFBIG, "File too large", "run.zarr/maps/saliency/c/3/0/0/0"),
     ("the run stopped: File too large: run.zarr/maps/saliency/c/3/0/0/0; the batches stored before it are kept "
      "in {out}, and the same command resumes from them")),
    (StoreError("writing batch 3 of run.zarr failed; the same command resumes"),
     "writing batch 3 of run.zarr failed; the same command resumes"),
])
def test_a_write_failure_mid_run_is_one_line_that_says_the_command_resumes(tmp_path, capsys, monkeypatch,
                                                                           failure, expected):
    from attribkit.datasets import run

    def fails(*args, **kwargs):
        raise failure

    monkeypatch.setattr(run, "explain_dataset", fails)
    (tmp_path / "data").mkdir()
    imsave(tmp_path / "data" / "a.png", make_scene(32))
    out = tmp_path / "run.zarr"
    assert main(["explain-dataset", str(tmp_path / "data"), "--model", "tests.test_cli:small_model", "--size",
                 "32", "--methods", "saliency", "--out", str(out), "--no-progress"]) == 2
    assert one_error_line(capsys) == f"attribkit: error: {expected.format(out=out)}\n"


def test_the_grid_title_names_the_class_once(scene, tmp_path, monkeypatch):
    from attribkit import viz

    titles = []
    real_save = viz.save

    def save(figure, path, *args, **kwargs):
        if getattr(figure, "_suptitle", None) is not None:
            titles.append(figure._suptitle.get_text())
        return real_save(figure, path, *args, **kwargs)

    monkeypatch.setattr(viz, "save", save)
    assert main(["explain", str(scene), *MODEL, "--target", "2", "--out", str(tmp_path / "out")]) == 0
    assert titles == ["saliency · class 2"]  # was "saliency · class class 2" without class names


def test_class_folders_name_outputs_by_their_path(tmp_path, capsys):
    for folder in ("cat", "dog"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        imsave(tmp_path / "data" / folder / "01.png", make_scene(32))
    assert main(["explain", str(tmp_path / "data"), *MODEL, "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.npy")) == ["cat_01_saliency.npy", "dog_01_saliency.npy"]


def test_explain_dataset_lists_the_odd_entries_of_a_class_folder(tmp_path, capsys):
    cat = tmp_path / "data" / "cat"
    cat.mkdir(parents=True)
    imsave(cat / "a.png", make_scene(32))
    (cat / "x.png").mkdir()
    os.symlink("self", cat / "self")
    (tmp_path / "data" / "empty.jpg").mkdir()  # not a class folder: an empty folder named like an image
    assert main(["explain-dataset", str(tmp_path / "data"), "--model", "tests.test_cli:small_model", "--size", "32",
                 "--methods", "saliency", "--out", str(tmp_path / "run.zarr"), "--no-progress", "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert "skipped cat/x.png: an empty folder, not an image file" in err
    assert "skipped cat/self: a symbolic link that leads nowhere" in err
    assert "skipped empty.jpg: an empty folder, not an image file" in err
