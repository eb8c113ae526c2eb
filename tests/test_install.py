"""tools/choose_torch.py: which torch build `make` installs, the probe's time bound, the report."""

import http.server
import importlib.util
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("choose_torch", ROOT / "tools" / "choose_torch.py")
choose_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(choose_torch)


def _never(index):
    raise AssertionError("probed")


def test_choice_by_platform_gpu_and_probe():
    assert choose_torch.choose("https://x/simple", platform="linux", gpu=False, probe=_never) == (
        "https://x/simple", "from https://x/simple (TORCH_INDEX)")
    assert choose_torch.choose("", platform="darwin", gpu=False, probe=_never)[0] is None
    assert choose_torch.choose("", platform="linux", gpu=True, probe=_never)[0] is None
    index, reason = choose_torch.choose("", platform="linux", gpu=False, cpu_index="https://cpu",
                                        probe=lambda i: (True, "HTTP 200"))
    assert index == "https://cpu" and "CPU build" in reason
    index, reason = choose_torch.choose("", platform="linux", gpu=False, cpu_index="https://cpu",
                                        probe=lambda i: (False, "URLError: no route"))
    assert index is None and "not reachable (URLError: no route)" in reason and "TORCH_INDEX" in reason


@pytest.fixture
def index_server():
    """A local index whose /torch/ page answers 200 (and everything else 404)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/simple/torch/" else 404)
            self.end_headers()
            self.wfile.write(b"<html></html>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_answers_refuses_and_times_out(index_server):
    assert choose_torch.reachable(index_server + "/simple", timeout=2.0) == (True, "HTTP 200")
    ok, why = choose_torch.reachable(index_server + "/missing", timeout=2.0)
    assert not ok and "404" in why
    with socket.socket() as closed:  # a port nobody listens on: refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    ok, why = choose_torch.reachable(f"http://127.0.0.1:{port}", timeout=2.0)
    assert not ok and "refused" in why.lower()
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.perf_counter()
        ok, why = choose_torch.reachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
        elapsed = time.perf_counter() - start
    assert not ok and elapsed < 1.5, (why, elapsed)


def _fake_python(tmp_path: Path, fail_on: str) -> tuple[Path, Path]:
    """An executable that logs its arguments and fails when they contain ``fail_on``."""
    log = tmp_path / "calls.txt"
    exe = tmp_path / "python"
    exe.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\ncase \"$*\" in *{fail_on}*) exit 3;; esac\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe, log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU choice is made on Linux")
def test_install_cpu_build_then_fallback(tmp_path, index_server, monkeypatch, capsys):
    monkeypatch.setattr(choose_torch, "has_nvidia_gpu", lambda: False)
    exe, log = _fake_python(tmp_path, fail_on="--index-url")
    code = choose_torch.install(str(exe), "torch==9 tv==1", "", index_server + "/simple")
    calls = log.read_text().splitlines()
    assert code == 0
    assert calls == [f"-m pip install --quiet torch==9 tv==1 --index-url {index_server}/simple",
                     "-m pip install --quiet torch==9 tv==1"]
    out = capsys.readouterr().out
    assert "the CPU build from" in out and "failed to install (pip exit 3)" in out

    log.unlink()  # the CPU index does not answer: the default build, and only it
    code = choose_torch.install(str(exe), "torch==9", "", index_server + "/missing")
    assert code == 0 and log.read_text().splitlines() == ["-m pip install --quiet torch==9"]
    assert "is not reachable" in capsys.readouterr().out

    log.unlink()  # an explicit index that fails is an error, not a silent fallback
    code = choose_torch.install(str(exe), "torch==9", "https://mine/simple", index_server + "/simple")
    assert code == 3 and log.read_text().splitlines() == [
        "-m pip install --quiet torch==9 --index-url https://mine/simple"]


def test_report_reads_the_build_and_the_size(tmp_path):
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "torch"
    site.mkdir(parents=True)
    (site / "big.bin").write_bytes(b"\1" * (3 << 20))
    (site / "version.py").write_text("__version__ = '2.5.0+cpu'\ncuda: Optional[str] = None\n")
    line = choose_torch.report(tmp_path / "venv")
    assert "2.5.0+cpu, the CPU build" in line
    size = float(line.split(" weighs ")[1].split(" GiB")[0])
    assert size == 0.1  # 3 MiB, rounded up to 0.1 GiB as `du -sh` does
    (site / "version.py").write_text("__version__ = '2.5.0+cu121'\ncuda: Optional[str] = '12.1'\n")
    assert "the CUDA 12.1 build" in choose_torch.report(tmp_path / "venv")
    assert choose_torch.report(tmp_path / "empty").startswith("torch: none in")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_installs_torch_through_the_chooser(tmp_path):
    def dry(*assignments):
        return subprocess.run(["make", "-n", "-C", str(ROOT), "install", f"VENV={tmp_path}/v", *assignments],
                              capture_output=True, text=True, check=True).stdout

    plan = dry()
    assert f'tools/choose_torch.py install --python {tmp_path}/v/bin/python ' \
           f'--spec "torch==2.14.1 torchvision==0.29.1" --index ""' in plan
    assert f"tools/choose_torch.py report --venv {tmp_path}/v" in plan
    assert "pip install --quiet torch" not in plan  # torch only through the chooser
    plan = dry("TORCH_INDEX=https://download.pytorch.org/whl/cpu", "TORCH_SPEC=torch")
    assert '--spec "torch" --index "https://download.pytorch.org/whl/cpu"' in plan
