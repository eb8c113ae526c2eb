"""`import attribkit` and listing methods must not import torch."""

import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_import_does_not_import_torch_or_load_plugins():
    proc = run_python(
        "import sys, attribkit\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'attribkit.host' not in sys.modules, 'host loaded eagerly'\n"
        "assert 'pluggy' not in sys.modules\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_listing_methods_and_plugins_does_not_import_torch():
    proc = run_python(
        "import sys, attribkit as ak\n"
        "from attribkit.cli import main\n"
        "assert main(['methods']) == 0 and main(['plugins']) == 0\n"
        "assert len(ak.methods()) >= 2\n"
        "assert 'torch' not in sys.modules, 'torch imported by listing'\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "saliency" in proc.stdout


def test_lazy_attributes_resolve():
    import attribkit as ak

    assert ak.explain.__module__ == "attribkit.api"
    assert issubclass(ak.TargetError, ak.AttribkitError)
    assert "explain" in dir(ak)
    try:
        ak.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")
