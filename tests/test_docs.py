"""Every ```python block of README.md and docs/*.md runs (blocks of a page share a namespace)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{page.stem}"}
    for i, block in enumerate(BLOCK.findall(page.read_text())):
        exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)


def test_readme_runs_with_attribkit_alone(tmp_path):
    """The README's example needs only the first install line: no plugin (issue 28: it used the
    example plugin's ``activation_map``). Run in a fresh interpreter with every plugin disabled."""
    import os
    import subprocess
    import sys

    code = "\n".join(BLOCK.findall((ROOT / "README.md").read_text()))
    env = {**os.environ, "ATTRIBKIT_DISABLE_PLUGINS": "example,captum", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "captum." not in done.stdout and "example." not in done.stdout  # the plugins were off
