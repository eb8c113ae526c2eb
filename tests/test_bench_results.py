"""The bench results file survives crashes and Ctrl-C, and warnings raised while a
method runs go into its records and the report instead of the terminal."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

from attribkit.api import get_method
from attribkit.bench.runner import BenchConfig, run_bench
from attribkit.bench.store import ResultsFileWarning, ResultStore
from attribkit.hookspecs import hookimpl
from attribkit.host import get_host
from attribkit.registry import MethodSpec
from attribkit.testing import TinyCNN

TINY = "attribkit.testing:TinyCNN"


def row(method, metric="speed", run="r"):
    return json.dumps({"run": run, "method": method, "metric": metric, "mean": 0.5})


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny_bench(out, methods=("random",), **kwargs):
    config = BenchConfig(out=out, model=TINY, methods=list(methods), metrics=["deletion_auc"], n_images=4,
                         **kwargs)
    return run_bench(config, progress=False, log=lambda s: None)


def test_a_torn_last_line_is_dropped_with_a_warning_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "results.jsonl"
    torn = row("gradcam")[:30]
    path.write_text(row("saliency") + "\n" + row("random") + "\n" + torn)
    with pytest.warns(ResultsFileWarning) as caught:
        store = ResultStore(path, "r")
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{path}: line 3 is torn ({torn!r})"), message
    assert "dropped" in message
    assert set(store.records) == {("saliency", "speed"), ("random", "speed")}
    store.add({"method": "gradcam", "metric": "speed", "mean": 0.7})
    assert [(r["method"], r.get("mean")) for r in rows_of(path)] == [
        ("saliency", 0.5), ("random", 0.5), ("gradcam", 0.7)]


def test_a_last_line_without_its_newline_is_kept_and_never_glued(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(row("saliency") + "\n" + row("random"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = ResultStore(path, "r")
    assert set(store.records) == {("saliency", "speed"), ("random", "speed")}
    store.add({"method": "gradcam", "metric": "speed"})
    store.add({"method": "cam", "metric": "speed"})
    assert [r["method"] for r in rows_of(path)] == ["saliency", "random", "gradcam", "cam"]
    assert set(ResultStore(path, "r").records) == {(m, "speed") for m in ("saliency", "random", "gradcam", "cam")}


@pytest.mark.parametrize("damaged", [row("gradcam")[:25] + "\x00\x00", "[1, 2]", '{"mean": 1}'])
def test_a_damaged_line_in_the_middle_is_skipped_with_a_warning_naming_it(tmp_path, damaged):
    path = tmp_path / "results.jsonl"
    path.write_text("\n".join([row("saliency"), damaged, row("random", run="other"), row("cam")]) + "\n")
    with pytest.warns(ResultsFileWarning, match=r"results\.jsonl: line 2 is not a result record \(") as caught:
        store = ResultStore(path, "r")
    assert len(caught) == 1 and repr(damaged) in str(caught[0].message)
    assert set(store.records) == {("saliency", "speed"), ("cam", "speed")}
    store.add({"method": "gradcam", "metric": "speed"})
    lines = path.read_text().splitlines()
    assert lines[1] == damaged and json.loads(lines[-1])["method"] == "gradcam"


def test_each_row_is_one_write_on_an_append_only_descriptor(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    path.write_text(row("saliency"))  # no newline: the new row's write carries it
    store = ResultStore(path, "r")
    calls = []
    real_open, real_write = os.open, os.write

    def spy_open(file, flags, *args):
        fd = real_open(file, flags, *args)
        calls.append(("open", flags & os.O_APPEND, fd))
        return fd

    def spy_write(fd, data):
        calls.append(("write", bytes(data), fd))
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "write", spy_write)
    store.add({"method": "random", "metric": "speed"})
    monkeypatch.undo()
    (opened, flag, fd), (wrote, data, write_fd) = calls
    assert (opened, wrote, write_fd) == ("open", "write", fd) and flag
    assert data == b"\n" + json.dumps({"run": "r", "method": "random", "metric": "speed"}).encode() + b"\n"


def test_resume_recomputes_only_the_torn_row(tmp_path):
    tiny_bench(tmp_path)
    path = tmp_path / "results.jsonl"
    first, second = path.read_text().splitlines()
    path.write_text(first + "\n" + second[:40])
    with pytest.warns(ResultsFileWarning, match="line 2 is torn"):
        records = tiny_bench(tmp_path)
    assert path.read_text().splitlines()[0] == first
    assert [(r["method"], r["metric"]) for r in rows_of(path)] == [("random", "deletion_auc"), ("random", "speed")]
    assert {(r["method"], r["metric"]) for r in records} == {("random", "deletion_auc"), ("random", "speed")}


class DataWarningPlugin:
    """``fake.warns``: the random map, after warning about the user's data."""

    @hookimpl
    def register_methods(self, register):
        def warns_then_random(model, inputs, **kwargs):
            warnings.warn("inputs look like 0..255 pixel values; normalise them first", UserWarning)
            return get_method("random").load()(model, inputs, **kwargs)

        register(MethodSpec(name="fake.warns", family="other", factory=lambda: warns_then_random,
                            needs=("forward",), options={"seed": 0}))


def test_warnings_while_methods_run_go_to_records_and_report_not_the_terminal(tmp_path, capfd):
    get_host().add_plugin(DataWarningPlugin(), "fake")
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        records = tiny_bench(tmp_path, methods=("fake.warns", "saliency"))
    data_warning = "UserWarning: inputs look like 0..255 pixel values; normalise them first"
    fake = {r["metric"]: r["warnings"] for r in records if r["method"] == "fake.warns"}
    assert len(fake["deletion_auc"]) == 1 and fake["deletion_auc"][0].startswith(data_warning)
    assert fake["speed"][0].startswith(data_warning)  # the timed calls warn again
    speed = next(r for r in records if r["method"] == "saliency" and r["metric"] == "speed")
    if "ratio" in speed["peers"].get("captum", {}):  # Captum's Saliency warns that it set requires_grad:
        captum = speed["peers"]["captum"]           # under the peer, not under attribkit's saliency
        assert any(w.startswith("UserWarning: Input Tensor 0 did not already require gradients")
                   and "(captum/" in w for w in captum["warnings"]), captum
        assert not any("(captum/" in w for w in speed["warnings"]), speed["warnings"]
    assert [str(w.message) for w in leaked] == []
    assert "Warning" not in capfd.readouterr().err
    report = (tmp_path / "report.md").read_text()
    assert "## Warnings" in report and "| fake.warns | 1 |" in report
    assert f"- fake.warns: {data_warning}" in report
    saved = json.loads((tmp_path / "results.json").read_text())
    assert any(data_warning in w for r in saved for w in r.get("warnings", ()))


def test_a_warnings_filter_of_error_still_applies_inside_methods(tmp_path):
    get_host().add_plugin(DataWarningPlugin(), "fake")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        records = tiny_bench(tmp_path, methods=("fake.warns",))
    assert all(r["error"].startswith("UserWarning: inputs look like") for r in records)


def test_ctrl_c_keeps_the_results_writes_a_partial_report_and_the_rerun_resumes(tmp_path):
    weights = tmp_path / "tiny.pt"
    torch.save(TinyCNN().state_dict(), weights)
    out = tmp_path / "out"
    methods = ["random", "saliency", "gradcam", "input_x_gradient"]
    cmd = [sys.executable, "-m", "attribkit", "bench", "--model", TINY, "--weights", str(weights),
           "--methods", *methods, "--metrics", "deletion_auc", "--n-images", "4", "--no-progress",
           "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    # a caught SIGINT is reset for the child, an ignored one (a shell's background job) would stay ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while not (results.exists() and results.read_bytes().endswith(b"\n")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no result within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.splitlines()) == 1, stderr
    stored = results.read_text().splitlines()
    assert 1 <= len(stored) < 2 * len(methods)
    assert stderr.strip() == (f"attribkit: interrupted: partial report ({len(stored)} of {2 * len(methods)} "
                              f"results) in {out / 'report.md'}; run the same command again to resume")
    assert "Partial: interrupted after" in (out / "report.md").read_text()

    rerun = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    lines = results.read_text().splitlines()
    assert lines[:len(stored)] == stored
    keys = [(json.loads(line)["method"], json.loads(line)["metric"]) for line in lines]
    assert len(keys) == len(set(keys)) == 2 * len(methods)  # nothing computed twice, nothing left out
    assert "Partial" not in (out / "report.md").read_text()
