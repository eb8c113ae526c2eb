"""``benchmarks/gpu.sh``: the dry run (the full script's code path at tiny sizes on
the CPU) writes a JSON and a Markdown table in which every section has rows, rows
that ran have finite positive times and ratios, and skipped rows say why; the
timing of one group survives an implementation that raises."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu.config import dry
from benchmarks.gpu.measure import ATTRIBKIT, FLOOR, PEER, Impl, compare, peer_impls
from benchmarks.gpu.run import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"


def gpu_sh(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-out")
    done = gpu_sh("--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_dry_run_writes_json_and_markdown(dry_run):
    out, done = dry_run
    doc = json.loads((out / "gpu.json").read_text())
    table = (out / "gpu.md").read_text()
    assert doc["meta"]["dry_run"] is True and doc["meta"]["device"] == "cpu"
    assert set(doc["meta"]["sections_s"]) == set(SECTIONS)
    assert "| section | method | implementation |" in table and table in done.stdout
    assert sum(line.startswith("| ") for line in table.splitlines()) == len(doc["rows"]) + 1
    for name in SECTIONS:
        assert f"[gpu] {name}: " in done.stderr  # elapsed time per section


def test_every_section_has_rows_with_finite_ratios_or_reasons(dry_run):
    rows = json.loads((dry_run[0] / "gpu.json").read_text())["rows"]
    for name in SECTIONS:
        mine = [r for r in rows if r["section"] == name]
        assert mine, name
        # every section's own code ran (attention needs timm, a dev dependency)
        if name != "attention" or any(r["status"] == "ok" for r in mine):
            assert any(r["status"] == "ok" and r["implementation"] == ATTRIBKIT for r in mine), mine
    for row in rows:
        assert row["implementation"] in (FLOOR, ATTRIBKIT, PEER)
        if row["status"] == "ok":
            assert positive(row["median_ms"]) and row["repeats"] >= 1, row
            assert positive(row["vs_floor"]), row
            assert all(positive(v) for v in row["vs_peer"].values()), row
        else:
            assert row["status"] == "skipped" and row["reason"], row


def test_dry_run_rows_name_peers_attnlrp_and_throughput(dry_run):
    rows = json.loads((dry_run[0] / "gpu.json").read_text())["rows"]
    gradcam = {r["name"]: r for r in rows if r["section"] == "kernels" and r["method"] == "gradcam"}
    assert {"forward", "attribkit"} <= set(gradcam)
    ran = [r["name"] for r in gradcam.values() if r["implementation"] == PEER and r["status"] == "ok"]
    assert set(gradcam["attribkit"]["vs_peer"]) == set(ran)
    attnlrp = [r for r in rows if r["method"] == "attnlrp" and r["implementation"] == ATTRIBKIT]
    assert len(attnlrp) == 1 and (attnlrp[0]["status"] == "ok" or attnlrp[0]["reason"])
    throughput = [r for r in rows if r["section"] == "dataset" and r["status"] == "ok"]
    assert {r["name"] for r in throughput} == {"explain loop", "explain_dataset"}
    assert all(positive(r["extra"]["images_per_s"]) for r in throughput)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_full_run_without_cuda_is_refused_in_one_line(tmp_path):
    done = gpu_sh("--out", str(tmp_path), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--dry-run" in done.stderr
    assert not (tmp_path / "gpu.json").exists()


def test_a_failing_or_missing_implementation_is_a_skipped_row_with_its_reason():
    def broken():
        raise RuntimeError("CUDA out of memory (pretend)\nmore detail")

    impls = [Impl(FLOOR, "floor", lambda: sum(range(100))),
             Impl(ATTRIBKIT, "attribkit", lambda: sum(range(200))),
             Impl(PEER, "broken", broken),
             Impl(PEER, "absent", None, reason="absent is not installed")]
    rows = {r.name: r for r in compare("s", "m", impls, dry(torch.device("cpu")))}
    assert rows["floor"].vs_floor == 1.0 and positive(rows["attribkit"].vs_floor)
    assert rows["broken"].status == "skipped"
    assert rows["broken"].reason == "RuntimeError: CUDA out of memory (pretend)"
    assert rows["absent"].reason == "absent is not installed"
    assert rows["attribkit"].vs_peer == {}  # no peer ran


def test_peer_impls_list_every_peer_of_the_table():
    names = [i.name for i in peer_impls("gradcam", lambda call: lambda: None)]
    assert names == ["captum", "pytorch-grad-cam", "torchcam"]
    assert peer_impls("raw_attention", lambda call: lambda: None) == []
