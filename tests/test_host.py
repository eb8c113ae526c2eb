"""Plugin loading through real entry points (fake distributions on sys.path)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import attribkit as ak
from attribkit.errors import PluginError
from attribkit.hookspecs import hookimpl
from attribkit.host import get_host
from attribkit.registry import MethodSpec

HEADER = "from attribkit.hookspecs import hookimpl\nfrom attribkit.registry import MethodSpec\n"
GOOD_SPEC = 'MethodSpec(name="{name}", family="other", factory="os.path:join")'


def make_distribution(root, dist, module, code, ep_name=None):
    """Write ``module.py`` and a ``dist-0.1.dist-info`` with an ``attribkit`` entry point."""
    (root / f"{module}.py").write_text(HEADER + textwrap.dedent(code))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[attribkit]\n{ep_name or module} = {module}\n")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def status(name):
    return {p.name: p for p in ak.plugins()}[name]


def test_example_plugin_is_loaded_from_its_distribution():
    info = status("example")
    assert (info.status, info.distribution, info.builtin) == ("loaded", "attribkit-example", False)
    assert ak.get_method("activation_map").plugin == "example"
    assert status("attribkit.families.gradient").builtin


def test_plugin_failing_at_import_is_recorded_and_others_load(plugin_dir):
    make_distribution(plugin_dir, "broken-plugin", "broken_plugin", "raise ImportError('no such dep: flux')\n")
    make_distribution(plugin_dir, "good-plugin", "good_plugin",
                      "@hookimpl\ndef register_methods(register):\n"
                      f"    register({GOOD_SPEC.format(name='good.method')})\n")
    broken = status("broken_plugin")
    assert broken.status == "failed"
    assert broken.distribution == "broken-plugin"
    assert "ImportError: no such dep: flux" in broken.error
    assert status("good_plugin").status == "loaded"
    assert ak.get_method("good.method").plugin == "good_plugin"
    assert ak.get_method("saliency").plugin == "attribkit.families.gradient"


def test_hook_that_raises_leaves_nothing_half_registered(plugin_dir):
    make_distribution(plugin_dir, "half-plugin", "half_plugin", f"""
        @hookimpl
        def register_methods(register):
            register({GOOD_SPEC.format(name='half.first')})
            raise RuntimeError("second method failed")
    """)
    info = status("half_plugin")
    assert info.status == "failed" and "RuntimeError: second method failed" in info.error
    assert "half.first" not in get_host().registry
    assert get_host().pm.get_plugin("half_plugin") is None


def test_invalid_spec_and_duplicate_name_are_failures(plugin_dir):
    make_distribution(plugin_dir, "invalid-plugin", "invalid_plugin", """
        @hookimpl
        def register_methods(register):
            register(MethodSpec(name="weird", family="astrology", factory="os:sep"))
    """)
    make_distribution(plugin_dir, "dup-plugin", "dup_plugin", f"""
        @hookimpl
        def register_methods(register):
            register({GOOD_SPEC.format(name='saliency')})
    """)
    assert "family 'astrology'" in status("invalid_plugin").error
    dup = status("dup_plugin").error
    assert "DuplicateMethodError" in dup and "'dup_plugin'" in dup and "'attribkit.families.gradient'" in dup
    assert ak.get_method("saliency").plugin == "attribkit.families.gradient"


def test_strict_mode_makes_failures_fatal(plugin_dir, monkeypatch):
    make_distribution(plugin_dir, "broken-plugin", "broken_plugin", "raise ImportError('nope')\n")
    monkeypatch.setenv("ATTRIBKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"'broken_plugin' \(distribution broken-plugin 0.1\).*nope"):
        ak.methods()


def test_disable_variable_blocks_named_plugins(monkeypatch):
    monkeypatch.setenv("ATTRIBKIT_DISABLE_PLUGINS", "example, attribkit.families.gradient")
    assert status("example").status == "disabled"
    assert status("attribkit.families.gradient").status == "disabled"
    assert "activation_map" not in get_host().registry
    assert "saliency" not in get_host().registry


def test_registering_and_unregistering_an_in_process_plugin():
    class FakePlugin:
        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="fake.method", family="other", factory="os.path:join"))

    host = get_host()
    info = host.add_plugin(FakePlugin(), "fake")
    assert info.methods == ("fake.method",)
    assert ak.get_method("fake.method").plugin == "fake"
    host.remove_plugin("fake")
    assert "fake.method" not in host.registry
    assert "fake" not in {p.name for p in ak.plugins()}


def test_cli_plugins_lists_loaded_and_failed(plugin_dir):
    make_distribution(plugin_dir, "broken-plugin", "broken_plugin", "import flux_capacitor\n")
    env = dict(os.environ, PYTHONPATH=str(plugin_dir))
    proc = subprocess.run([sys.executable, "-m", "attribkit", "plugins", "--json"], env=env,
                          capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["example"]["status"] == "loaded"
    assert rows["example"]["version"] == "0.1.0"
    assert rows["broken_plugin"]["status"] == "failed"
    assert "No module named 'flux_capacitor'" in rows["broken_plugin"]["error"]
    table = subprocess.run([sys.executable, "-m", "attribkit", "plugins"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert "broken_plugin" in table and "failed" in table
