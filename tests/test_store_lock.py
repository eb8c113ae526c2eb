"""One writer per store: a second process is refused naming the first (two real processes),
a lock left by a killed process is taken over, the lock file is gone after a run."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import attribkit as ak
from attribkit.datasets.lock import StoreLock, lock_path
from attribkit.errors import StoreError
from tests.dataset_support import Numbered, small_model, stacked

ROOT = Path(__file__).resolve().parents[1]
WRITER = """
import sys
import attribkit as ak
from tests.dataset_support import Numbered, small_model, stacked
ak.explain_dataset(small_model(), Numbered(10), ["saliency"], sys.argv[1], batch_size=2, progress=False)
"""


def run(out, **kwargs):
    return ak.explain_dataset(small_model(), Numbered(10), ["saliency"], out, batch_size=2, progress=False, **kwargs)


def held_writer(out: Path, at: int, go: Path) -> subprocess.Popen:
    """A second process writing ``out`` that stops at item ``at`` until ``go`` exists."""
    env = {**os.environ, "WAIT_AT": str(at), "WAIT_FOR": str(go), "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = go.with_name(go.name + ".waiting")
    deadline = time.monotonic() + 60
    while not waiting.exists():
        assert writer.poll() is None, writer.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return writer


def test_two_fresh_runs_at_once_the_second_is_refused_naming_the_first(tmp_path):
    out, go = tmp_path / "run.zarr", tmp_path / "go"
    first = held_writer(out, 0, go)  # holds the lock while it probes item 0, before the store exists
    try:
        with pytest.raises(StoreError, match=rf"run\.zarr is being written by another process \(pid {first.pid} "
                                             rf"on {socket.gethostname()}, since 20.*\); wait for it to finish"):
            run(out)
    finally:
        go.touch()
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    store = ak.open_store(out)
    assert store.complete and len(store.runs) == 1
    assert not lock_path(out).exists()
    assert run(out).runs[-1]["images"] == 0  # the lock is free again


def test_a_resume_beside_a_running_writer_is_refused_and_a_killed_writers_lock_is_taken_over(tmp_path):
    out, go = tmp_path / "run.zarr", tmp_path / "go"
    writer = held_writer(out, 5, go)  # batches 0 and 1 stored, batch 2 in the making
    try:
        with pytest.raises(StoreError, match=f"pid {writer.pid}"):
            run(out)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
    assert lock_path(out).exists()  # left behind, but its flock died with the process
    resumed = run(out)
    assert resumed.complete and not lock_path(out).exists()
    expected = ak.explain(small_model(), stacked(10), method="saliency")
    np.testing.assert_allclose(np.asarray(resumed["saliency"]), expected.numpy(), rtol=1e-5, atol=1e-7)


def test_the_lock_in_one_process_and_a_stale_file(tmp_path):
    out = tmp_path / "run.zarr"
    lock_path(out).write_text("not json: a stale file from a crash")
    with StoreLock(out):
        with pytest.raises(StoreError, match=r"being written by another process \(pid \d+ on .*\)"):
            StoreLock(out).acquire()  # a second open file: flock refuses it in the same process too
        with pytest.raises(StoreError, match="being written"):
            run(out)
    assert not lock_path(out).exists()
    assert run(out).complete


TORCHRUN_WRITER = """
import sys
import attribkit as ak
from tests.dataset_support import Numbered, small_model
try:
    ak.explain_dataset(small_model(), Numbered(10), ["saliency"], sys.argv[1], batch_size=2, progress=False)
except ak.AttribkitError as exc:
    print(f"refused: {exc}")
    sys.exit(2)
"""


def test_torchrun_ranks_share_the_lock_and_check_their_share_of_the_stored_items(tmp_path):
    import zarr

    out = tmp_path / "run.zarr"
    run(out)
    zarr.open_group(out, mode="r+")["done"][4] = False  # batch 4 to compute; batches 0-3 checked by two ranks
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [str(torchrun), "--standalone", "--nproc_per_node=2", "--no-python", sys.executable, "-c",
               TORCHRUN_WRITER, str(out)]
    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    store = ak.open_store(out)
    assert store.complete and store.runs[-1]["processes"] == 2 and store.runs[-1]["images"] == 2
    assert store.verify().ok and not lock_path(out).exists()
    zarr.open_group(out, mode="r+")["done"][4] = False
    env["CHANGE_ITEM"] = "3"  # batch 1, the share of rank 1
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert refused.stdout.count("refused: item 3 of the data is not the one stored") == 2  # on both ranks
    assert not ak.open_store(out).batches_done[4] and not lock_path(out).exists()
