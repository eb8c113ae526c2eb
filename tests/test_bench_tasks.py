"""The benchmark tasks: one table, data whose evidence agrees with its labels, names
that fail clearly, the older spellings, and a runner that names no task."""

import dataclasses
import inspect
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from attribkit.bench import config, profiles, recording, runner, selection, speed, store, subject
from attribkit.bench.profiles import QUICK_METRICS
from attribkit.bench.reference import TrainConfig
from attribkit.bench.runner import BenchConfig, run_bench
from attribkit.bench.synthetic import TEMPLATES
from attribkit.bench.tasks import (
    SPELLINGS,
    TASKS,
    UnknownTaskError,
    get_task,
    resolve_task,
    task_names,
)
from attribkit.bench.tasks.base import ReferenceTask, TaskData
from attribkit.bench.tasks.folder import FolderTask
from attribkit.cli import main
from attribkit.errors import AttribkitError

NAMES = ["shapes", "shapes-vit", "digits", "segmentation", "detection", "text"]
IMAGE_NAMES = NAMES[:-1]  # the text task's data: tests/test_bench_text.py


def needs(name):
    """The task's optional package: scikit-learn ships the digits."""
    return pytest.importorskip("sklearn") if name == "digits" else None


def test_the_table_lists_the_three_tasks_and_the_cli_shows_them(capsys):
    assert task_names() == NAMES
    for name in NAMES:
        task = get_task(name)
        assert task.name == name and task.description and task.evidence
    assert main(["bench", "tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == NAMES
    assert main(["bench", "tasks", "--json"]) == 0
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == NAMES


def test_importing_the_table_imports_no_torch():
    code = "import sys, attribkit.bench.tasks; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_each_task_draws_images_with_one_evidence_box_each_reproducibly(name):
    needs(name)
    data = get_task(name).data(6, seed=2)
    n, channels, height, width = data.inputs.shape
    assert n == 6 and channels == 3 and data.inputs.dtype == torch.float32
    assert data.labels.shape == (6,) and data.labels.dtype == torch.int64
    assert 0 <= int(data.labels.min()) and int(data.labels.max()) < len(data.class_names)
    assert data.masks.shape == (6, height, width) and data.masks.dtype == torch.bool
    for mask in data.masks:  # one filled rectangle
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        assert int(mask.sum()) == len(rows) * len(cols) > 0
        assert len(rows) == rows[-1] - rows[0] + 1 and len(cols) == cols[-1] - cols[0] + 1
    again = get_task(name).data(6, seed=2)
    assert torch.equal(again.inputs, data.inputs) and torch.equal(again.labels, data.labels)
    assert not torch.equal(get_task(name).data(6, seed=3).inputs, data.inputs)


@pytest.mark.parametrize("name", ["shapes", "shapes-vit"])
def test_the_scenes_masks_hold_the_labelled_pattern(name):
    """The box holds the template of the image's label, in one colour."""
    data = get_task(name).data(8, seed=0)
    for image, label, mask in zip(data.inputs, data.labels, data.masks):
        template = torch.from_numpy(TEMPLATES[data.class_names[int(label)]])
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        box = image[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.shape[1:] == template.shape
        pattern = box[:, template]  # (3, pixels of the shape)
        assert torch.allclose(pattern, pattern[:, :1].expand_as(pattern))


def test_digits_masks_box_the_ink():
    needs("digits")
    data = get_task("digits").data(8, seed=0)
    inside = (data.inputs[:, 0] * data.masks).sum((1, 2)) / data.masks.sum((1, 2))
    outside = (data.inputs[:, 0] * ~data.masks).sum((1, 2)) / (~data.masks).sum((1, 2))
    assert (inside > outside).all()


def test_an_unknown_task_names_the_close_ones_and_all(capsys, tmp_path):
    with pytest.raises(UnknownTaskError, match=r"unknown benchmark task 'shape'; did you mean 'shapes'") as caught:
        get_task("shape")
    assert isinstance(caught.value, AttribkitError) and "shapes, shapes-vit, digits" in str(caught.value)
    assert main(["bench", "--task", "digts", "--out", str(tmp_path)]) == 2
    assert "did you mean 'digits'" in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_the_older_spellings_are_the_same_tasks_and_share_results(tmp_path):
    assert get_task("shapes_vit") is get_task("shapes-vit")
    assert resolve_task() is get_task("shapes")
    assert resolve_task(model="synthetic") is get_task("shapes")
    assert resolve_task(model="synthetic-vit") is get_task("shapes-vit")
    assert resolve_task(data="digits") is resolve_task(model="synthetic", data="digits") is get_task("digits")
    assert set(SPELLINGS.values()) <= set(TASKS)
    key = BenchConfig(out=tmp_path, data="digits").run_key()
    assert BenchConfig(out=tmp_path, task="digits").run_key() == key
    assert BenchConfig(out=tmp_path).run_key() == BenchConfig(out=tmp_path, task="shapes").run_key() != key
    user = resolve_task(model="torchvision:resnet18", data=str(tmp_path), weights="DEFAULT")
    assert isinstance(user, FolderTask) and user.name == "torchvision:resnet18"
    with pytest.raises(AttribkitError, match="--task brings its own"):
        resolve_task("digits", model="synthetic")
    with pytest.raises(AttribkitError, match="a folder of images goes with a model of yours"):
        resolve_task(model="synthetic", data=str(tmp_path))


def test_the_runner_names_no_task():
    words = {*TASKS, *(m for m, _ in SPELLINGS), *(d for _, d in SPELLINGS if d)}
    for module in (runner, config, subject, selection, speed, store, recording, profiles):
        source = inspect.getsource(module)
        # a name in quotes (a dispatch on it) or a task module named ("text" is also a common variable)
        named = [w for w in words if re.search(rf"""["']{re.escape(w)}["']|tasks[.]{re.escape(w)}\b""", source)]
        assert not named, module.__name__


def test_one_meaning_per_profile_on_every_task(tmp_path):
    masked = subject.Subject("any", torch.nn.Identity(), torch.zeros(1, 3, 8, 8), torch.zeros(1),
                             torch.ones(1, 8, 8, dtype=torch.bool))
    quick = selection.choose_metrics(BenchConfig(out=tmp_path, task="digits"), masked)
    assert {m.name for m in quick} == set(QUICK_METRICS)
    full = selection.choose_metrics(BenchConfig(out=tmp_path, task="digits", profile="full"), masked)
    assert {m.name for m in full} > set(QUICK_METRICS) and len(full) > 30


TINY_SHAPES = dataclasses.replace(get_task("shapes"), name="tiny-shapes",
                                  config=TrainConfig(size=32, n_train=64, n_test=32, epochs=1, batch=32, width=8))


def test_a_new_task_is_one_table_line_and_a_quick_bench_runs_on_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIBKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(TASKS, "tiny-shapes", "tests.test_bench_tasks:TINY_SHAPES")
    records = run_bench(BenchConfig(out=tmp_path / "out", task="tiny-shapes", methods=["gradcam", "random"],
                                    n_images=4), progress=False, log=lambda s: None)
    scored = {(r["method"], r["metric"]): r for r in records}
    assert set(scored) == {(m, k) for m in ("gradcam", "random") for k in ("speed", *QUICK_METRICS)}
    assert not [k for k, r in scored.items() if "error" in r]
    assert "tiny-shapes, profile quick" in (tmp_path / "out" / "report.md").read_text()
    assert isinstance(TINY_SHAPES, ReferenceTask) and isinstance(TINY_SHAPES.data(2), TaskData)
    assert np.isfinite(scored["gradcam", "pointing_game"]["mean"])
