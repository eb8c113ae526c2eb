"""Plugin loading through real entry points (fake distributions on sys.path)."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

import attribkit as ak
from attribkit.errors import PluginError, SpecError
from attribkit.hookspecs import hookimpl
from attribkit.host import get_host
from attribkit.registry import MethodSpec

HEADER = "from attribkit.hookspecs import hookimpl\nfrom attribkit.registry import MethodSpec\n"
GOOD_SPEC = 'MethodSpec(name="{name}", family="other", factory="os.path:join")'


def make_distribution(root, dist, module, code, ep_name=None):
    """Write ``module.py`` and a ``dist-0.1.dist-info`` with an ``attribkit`` entry point."""
    (root / f"{module}.py").write_text(HEADER + textwrap.dedent(code))
    write_dist_info(root, dist, f"{ep_name or module} = {module}")


def write_dist_info(root, dist, entry_point):
    """A ``dist-0.1.dist-info`` folder, named as installers name it (``-`` escaped as ``_``)."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[attribkit]\n{entry_point}\n")


def forget_modules_from(root):
    """Drop the modules imported from ``root`` so the next test imports its own."""
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(root)):
            del sys.modules[name]


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    forget_modules_from(tmp_path)


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


# --- issue 13: plugins that misbehave ---------------------------------------------------------


@pytest.fixture
def late_plugin_dir(tmp_path, monkeypatch):
    """Like ``plugin_dir`` but at the end of ``sys.path``: its distributions load after the installed ones."""
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    yield tmp_path
    forget_modules_from(tmp_path)


def records(name):
    """Every plugin record under ``name``, by distribution."""
    return {p.distribution: p for p in ak.plugins() if p.name == name}


def run_cli(plugin_dir, *args):
    env = dict(os.environ, PYTHONPATH=str(plugin_dir))
    return subprocess.run([sys.executable, "-m", "attribkit", *args], env=env,
                          capture_output=True, text=True, check=False)


HOOK_WITH = """
    @hookimpl
    def register_methods(register):
        register(MethodSpec(name="{name}", family="other", factory="{factory}"))
"""


def test_entry_point_named_like_a_builtin_is_refused_before_import(plugin_dir):
    make_distribution(plugin_dir, "evil-plugin", "evil_builtin_name",
                      "raise AssertionError('a refused plugin must not be imported')\n",
                      ep_name="attribkit.families.gradient")
    rows = records("attribkit.families.gradient")
    builtin, evil = rows["attribkit"], rows["evil-plugin"]
    assert builtin.status == "loaded" and "saliency" in builtin.methods
    assert ak.get_method("saliency").plugin == "attribkit.families.gradient"
    assert evil.status == "failed" and evil.methods == ()
    assert evil.error.startswith("PluginError: plugin name 'attribkit.families.gradient' of "
                                 "distribution evil-plugin 0.1 is reserved for the built-in plugin "
                                 "of distribution attribkit")
    assert "evil_builtin_name" not in sys.modules


def test_second_distribution_with_a_taken_name_fails_and_the_first_keeps_it(late_plugin_dir):
    make_distribution(late_plugin_dir, "impostor", "impostor_example",
                      HOOK_WITH.format(name="impostor.method", factory="os.path:join"), ep_name="example")
    rows = records("example")
    assert rows["attribkit-example"].status == "loaded"
    assert ak.get_method("activation_map").plugin == "example"
    assert rows["impostor"].status == "failed"
    assert rows["impostor"].error == ("PluginError: plugin name 'example' of distribution impostor 0.1 "
                                      "is already taken by distribution attribkit-example 0.1.0")
    assert "impostor.method" not in get_host().registry
    assert "impostor_example" not in sys.modules


def test_the_first_distribution_on_sys_path_keeps_a_shared_name(plugin_dir):
    make_distribution(plugin_dir, "early-example", "early_example",
                      HOOK_WITH.format(name="early.method", factory="os.path:join"), ep_name="example")
    rows = records("example")
    assert (rows["early-example"].status, rows["early-example"].methods) == ("loaded", ("early.method",))
    assert ak.get_method("early.method").plugin == "example"
    assert rows["attribkit-example"].status == "failed"
    assert "'example' of distribution attribkit-example 0.1.0 is already taken by distribution " \
           "early-example 0.1" in rows["attribkit-example"].error
    assert "activation_map" not in get_host().registry


def test_in_process_plugin_cannot_take_a_loaded_name():
    class Impostor:
        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="impostor.method", family="other", factory="os.path:join"))

    info = get_host().add_plugin(Impostor(), "example", distribution="impostor", version="9")
    assert info.status == "failed" and "already taken by distribution attribkit-example" in info.error
    assert records("example")["attribkit-example"].status == "loaded"
    assert ak.get_method("activation_map").plugin == "example"
    assert "impostor.method" not in get_host().registry


def test_one_module_under_two_names_keeps_the_first_registration(plugin_dir):
    make_distribution(plugin_dir, "twice-a", "twice_module",
                      HOOK_WITH.format(name="twice.method", factory="os.path:join"), ep_name="twice_a")
    write_dist_info(plugin_dir, "twice-b", "twice_b = twice_module")
    first, second = sorted((status("twice_a"), status("twice_b")), key=lambda p: p.status != "loaded")
    assert (first.status, second.status) == ("loaded", "failed")   # which is first: directory order
    assert "ValueError: Plugin already registered under a different name" in second.error
    assert get_host().pm.get_plugin(first.name) is sys.modules["twice_module"]
    assert ak.get_method("twice.method").plugin == first.name


@pytest.mark.parametrize("code, error", [
    ("import sys\nsys.exit(1)\n", "SystemExit: the plugin called sys.exit(1)"),
    ("raise SystemExit\n", "SystemExit: the plugin called sys.exit(None)"),
    ("raise KeyboardInterrupt\n", "KeyboardInterrupt"),
    ("@hookimpl\ndef register_methods(register):\n    raise SystemExit(3)\n",
     "SystemExit: the plugin called sys.exit(3)"),
    ("@hookimpl\ndef register_methods(register):\n    raise KeyboardInterrupt('stop')\n",
     "KeyboardInterrupt: stop"),
], ids=["sys.exit-at-import", "SystemExit-at-import", "KeyboardInterrupt-at-import",
        "SystemExit-in-hook", "KeyboardInterrupt-in-hook"])
def test_exit_and_interrupt_from_a_plugin_are_failures(plugin_dir, code, error):
    make_distribution(plugin_dir, "exit-plugin", "exit_plugin", code)
    info = status("exit_plugin")
    assert (info.status, info.error) == ("failed", error)
    assert get_host().pm.get_plugin("exit_plugin") is None
    assert status("example").status == "loaded"
    assert ak.get_method("saliency").plugin == "attribkit.families.gradient"


def test_strict_mode_turns_sys_exit_into_plugin_error(plugin_dir, monkeypatch):
    make_distribution(plugin_dir, "exit-plugin", "exit_plugin", "import sys\nsys.exit(1)\n")
    monkeypatch.setenv("ATTRIBKIT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"'exit_plugin'.*SystemExit: the plugin called sys.exit\(1\)"):
        ak.methods()


def test_cli_methods_survives_a_plugin_calling_sys_exit(plugin_dir):
    make_distribution(plugin_dir, "exit-plugin", "exit_plugin", "import sys\nsys.exit(1)\n")
    proc = run_cli(plugin_dir, "methods")
    assert proc.returncode == 0, proc.stderr
    assert "saliency" in proc.stdout and "activation_map" in proc.stdout
    rows = {r["name"]: r for r in json.loads(run_cli(plugin_dir, "plugins", "--json").stdout)}
    assert rows["exit_plugin"]["status"] == "failed"
    assert rows["exit_plugin"]["error"] == "SystemExit: the plugin called sys.exit(1)"


def test_factory_module_that_cannot_be_found_fails_the_plugin_at_load(plugin_dir):
    make_distribution(plugin_dir, "missing-factory", "missing_factory", """
        @hookimpl
        def register_methods(register):
            register(MethodSpec(name="fine.method", family="other", factory="os.path:join"))
            register(MethodSpec(name="lost.method", family="other", factory="no_such_module_13:run"))
    """)
    info = status("missing_factory")
    assert info.status == "failed"
    assert info.error == ("SpecError: method 'lost.method' of plugin 'missing_factory': factory "
                          "'no_such_module_13:run' names module 'no_such_module_13', which cannot be found")
    assert "fine.method" not in get_host().registry and "lost.method" not in get_host().registry


@pytest.mark.parametrize("factory", [":run", "pkg:", "pkg..sub:run", "pkg:a.b", "pkg mod:run"])
def test_malformed_factory_strings_are_rejected_with_the_spec(factory):
    with pytest.raises(SpecError, match="factory must be a callable or a 'module:attribute' string"):
        MethodSpec(name="m", family="other", factory=factory)


def test_factory_modules_are_found_without_running_package_inits(plugin_dir):
    package = plugin_dir / "heavy_pkg_13"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('heavy_pkg_13/__init__.py was run')\n")
    (package / "kernels.py").write_text("")
    make_distribution(plugin_dir, "heavy-ok", "heavy_ok",
                      HOOK_WITH.format(name="heavy.ok", factory="heavy_pkg_13.kernels:run"))
    make_distribution(plugin_dir, "heavy-typo", "heavy_typo",
                      HOOK_WITH.format(name="heavy.typo", factory="heavy_pkg_13.kernelz:run"))
    assert status("heavy_ok").status == "loaded"
    assert "names module 'heavy_pkg_13.kernelz', which cannot be found" in status("heavy_typo").error
    assert "heavy_pkg_13" not in sys.modules


def test_factory_failures_at_use_name_the_plugin_and_the_factory(plugin_dir):
    (plugin_dir / "uses_missing_dep_13.py").write_text("import not_installed_dep_13\n")
    (plugin_dir / "vanishing_13.py").write_text("")
    make_distribution(plugin_dir, "use-time", "use_time", """
        @hookimpl
        def register_methods(register):
            register(MethodSpec(name="no.attr", family="other", factory="os.path:no_such_function"))
            register(MethodSpec(name="no.dep", family="other", factory="uses_missing_dep_13:run"))
            register(MethodSpec(name="gone.module", family="other", factory="vanishing_13:run"))
    """)
    assert status("use_time").status == "loaded"
    with pytest.raises(PluginError, match=r"method 'no.attr' of plugin 'use_time': factory "
                                          r"'os.path:no_such_function': module 'os.path' has no "
                                          r"attribute 'no_such_function'"):
        ak.explain(None, None, method="no.attr")
    with pytest.raises(ak.MissingDependencyError, match=r"method 'no.dep' of plugin 'use_time': factory "
                                                        r"'uses_missing_dep_13:run'.*'not_installed_dep_13'"):
        ak.explain(None, None, method="no.dep")
    (plugin_dir / "vanishing_13.py").unlink()
    importlib.invalidate_caches()
    with pytest.raises(PluginError, match=r"method 'gone.module' of plugin 'use_time': factory "
                                          r"'vanishing_13:run': module 'vanishing_13' cannot be found"):
        ak.explain(None, None, method="gone.module")


def test_error_is_one_line_and_detail_keeps_the_rest(plugin_dir):
    make_distribution(plugin_dir, "multi-line", "multi_line",
                      "raise RuntimeError('\\n  first line  \\nsecond line\\nthird line')\n")
    info = status("multi_line")
    assert info.error == "RuntimeError: first line"
    assert info.detail.startswith("Traceback") and "second line\nthird line" in info.detail
    assert status("example").detail == ""


def test_cli_plugins_table_has_one_row_per_plugin_and_json_has_detail(plugin_dir):
    make_distribution(plugin_dir, "multi-line", "multi_line",
                      "raise RuntimeError('first line\\nsecond line')\n")
    make_distribution(plugin_dir, "evil-plugin", "evil_builtin_name", "",
                      ep_name="attribkit.families.gradient")
    rows = json.loads(run_cli(plugin_dir, "plugins", "--json").stdout)
    by_dist = {r["distribution"]: r for r in rows}
    assert by_dist["multi-line"]["error"] == "RuntimeError: first line"
    assert "second line" in by_dist["multi-line"]["detail"]
    builtin = [r for r in rows if r["name"] == "attribkit.families.gradient" and r["builtin"]]
    assert builtin[0]["status"] == "loaded" and "saliency" in builtin[0]["methods"]
    proc = run_cli(plugin_dir, "plugins")
    assert proc.returncode == 0
    table = proc.stdout.splitlines()
    assert len(table) == 2 + len(rows)
    assert "second line" not in proc.stdout
    failed = [line for line in table if "failed" in line]
    assert any("multi_line" in line and line.endswith("RuntimeError: first line") for line in failed)
    assert any("evil-plugin" in line and "reserved" in line for line in failed)
