"""Which PyTorch build `make` installs into the virtualenv, and what it installed.

    python tools/choose_torch.py install --python .venv/bin/python --spec "torch==2.14.1 ..." [--index URL]
    python tools/choose_torch.py report --venv .venv

``install``: with ``--index`` (the Makefile's ``TORCH_INDEX``) the spec comes from that
index, as asked. Otherwise, on Linux without an NVIDIA GPU, where PyPI's default wheels
bundle CUDA (several GB), the CPU wheel index is probed for a few seconds: reachable, the
CPU build comes from it; not reachable (or its install fails), the default build comes
from the configured index (PyPI), as before. It says which and why, in one line.
``report``: the torch version and build in the virtualenv, and the virtualenv's size.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_SECONDS = 3.0


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is loaded (``/proc/driver/nvidia``) or ``nvidia-smi`` is on the PATH."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def reachable(index: str, timeout: float = PROBE_SECONDS) -> tuple[bool, str]:
    """Whether ``index``'s torch page answers within ``timeout`` seconds (name resolution
    included: the request runs in a thread that is abandoned when late), and why not."""
    outcome: list[tuple[bool, str]] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(f"{index.rstrip('/')}/torch/", timeout=timeout) as answer:
                outcome.append((answer.status == 200, f"HTTP {answer.status}"))
        except Exception as exc:  # noqa: BLE001 - any failure means: not usable
            outcome.append((False, " ".join(f"{type(exc).__name__}: {exc}".split())[:120]))

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else (False, f"no answer within {timeout:g} s")


def choose(index: str, *, platform: str, gpu: bool, cpu_index: str = CPU_INDEX,
           probe=reachable) -> tuple[str | None, str]:
    """``(index to install torch from, or None for the configured one, reason)``."""
    if index:
        return index, f"from {index} (TORCH_INDEX)"
    if not platform.startswith("linux"):
        return None, f"the default build (on {platform} it is the CPU one)"
    if gpu:
        return None, "the default (CUDA) build: an NVIDIA GPU is present"
    ok, why = probe(cpu_index)
    if ok:
        return cpu_index, f"the CPU build from {cpu_index}: no NVIDIA GPU here"
    return None, (f"from the configured index (PyPI's build bundles CUDA, several GB): no NVIDIA GPU here, "
                  f"but {cpu_index} is not reachable ({why}); TORCH_INDEX=URL picks another index")


def install(python: str, spec: str, index: str, cpu_index: str) -> int:
    """Install ``spec`` with ``python -m pip`` from the chosen index; a failed CPU
    install falls back to the default build."""
    chosen, reason = choose(index, platform=sys.platform, gpu=has_nvidia_gpu(), cpu_index=cpu_index)
    print(f"torch: installing {spec}: {reason}", flush=True)
    pip = [python, "-m", "pip", "install", "--quiet", *shlex.split(spec)]
    if chosen is None:
        return subprocess.call(pip)
    code = subprocess.call([*pip, "--index-url", chosen])
    if code and not index:
        print(f"torch: the CPU build failed to install (pip exit {code}); installing the default build",
              flush=True)
        code = subprocess.call(pip)
    return code


def build(venv: Path) -> tuple[str, str | None] | None:
    """``(torch version, CUDA version or None)`` of the torch in ``venv``, read from its
    ``torch/version.py`` without importing it; None when torch is not there."""
    for version_file in sorted(venv.glob("lib*/python*/site-packages/torch/version.py")) + sorted(
            venv.glob("Lib/site-packages/torch/version.py")):
        text = version_file.read_text()
        version = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)", text, re.M)
        cuda = re.search(r"^cuda\b[^=]*=\s*['\"]([^'\"]+)", text, re.M)
        return (version.group(1) if version else "?"), (cuda.group(1) if cuda else None)
    return None


def tree_bytes(root: Path) -> int:
    """Bytes on disk under ``root`` (as ``du``: allocated blocks, links not followed)."""
    total = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total


def report(venv: Path) -> str:
    """One line: which torch build ``venv`` holds and what the virtualenv weighs."""
    size = f"{math.ceil(tree_bytes(venv) / 2**30 * 10) / 10:.1f} GiB"  # rounded up, as `du -sh`
    found = build(venv)
    if found is None:
        return f"torch: none in {venv} ({size})"
    version, cuda = found
    kind = f"CUDA {cuda} build (also runs on the CPU)" if cuda else "CPU build"
    hint = ""
    if cuda and not has_nvidia_gpu():
        hint = (f"; no NVIDIA GPU here: `make clean; make TORCH_INDEX={CPU_INDEX}` installs the CPU build "
                "(2.2 GiB in all, measured with its [dev,all] extras)")
    return f"torch: {version}, the {kind}; {venv} weighs {size}{hint}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install torch into a virtualenv")
    inst.add_argument("--python", required=True, help="the virtualenv's python")
    inst.add_argument("--spec", required=True, help="requirements, e.g. 'torch==2.14.1 torchvision==0.29.1'")
    inst.add_argument("--index", default="", help="install from this index (no probe)")
    inst.add_argument("--cpu-index", default=CPU_INDEX, help="the CPU wheel index to probe")
    rep = sub.add_parser("report", help="say which torch a virtualenv holds and its size")
    rep.add_argument("--venv", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.command == "install":
        return install(args.python, args.spec, args.index.strip(), args.cpu_index)
    print(report(args.venv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
