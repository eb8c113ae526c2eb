"""The metric suite lives in ``attribkit.evaluation`` (one module per Quantus group); the
old ``attribkit.bench`` paths still work for one release, with a DeprecationWarning."""

import importlib
import subprocess
import sys

import pytest

import attribkit as ak

GROUP_MODULES = {
    "faithfulness": {"attribkit.evaluation.faithfulness", "attribkit.evaluation.faithfulness_correlation",
                     "attribkit.evaluation.tokens"},
    "robustness": {"attribkit.evaluation.robustness"},
    "localisation": {"attribkit.evaluation.localisation", "attribkit.evaluation.tokens"},
    "complexity": {"attribkit.evaluation.complexity"},
    "sanity": {"attribkit.evaluation.randomisation"},
    "axiomatic": {"attribkit.evaluation.axiomatic"},
}


def test_every_builtin_metric_is_implemented_in_the_module_of_its_group():
    builtin = [m for m in ak.metrics() if m.plugin == "attribkit.evaluation.plugin"]
    assert len(builtin) >= 37
    for spec in builtin:
        module, _, name = spec.factory.partition(":")
        assert module in GROUP_MODULES[spec.kind], (spec.name, spec.kind, module)
        assert callable(spec.load()) and name == spec.name


@pytest.mark.parametrize(("old", "name", "new"), [
    ("attribkit.bench.metrics", "pixel_relevance", "attribkit.evaluation.functional"),
    ("attribkit.bench.metrics_common", "score_rows", "attribkit.evaluation.rows"),
    ("attribkit.bench.metrics_faithfulness", "pixel_flipping", "attribkit.evaluation.faithfulness"),
    ("attribkit.bench.metrics_faithfulness", "sensitivity_n", "attribkit.evaluation.faithfulness_correlation"),
    ("attribkit.bench.metrics_localisation", "sparseness", "attribkit.evaluation.complexity"),
    ("attribkit.bench.metrics_robustness", "mprt", "attribkit.evaluation.randomisation"),
    ("attribkit.bench.metrics_robustness", "completeness", "attribkit.evaluation.axiomatic"),
    ("attribkit.bench.evaluate", "MetricInput", "attribkit.evaluation.base"),
    ("attribkit.bench.evaluate", "evaluate", "attribkit.evaluation.api"),
    ("attribkit.bench.evaluate", "deletion_auc", "attribkit.evaluation.faithfulness"),
    ("attribkit.bench.builtin_metrics", "SUITE", "attribkit.evaluation.plugin"),
])
def test_old_paths_warn_and_give_the_moved_object(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"moved to {new}.{name}"):
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(new), name)


def test_old_path_names_an_unknown_attribute():
    module = importlib.import_module("attribkit.bench.metrics")
    with pytest.raises(AttributeError, match="no attribute 'no_such_metric'.*attribkit.evaluation.functional"):
        module.no_such_metric  # noqa: B018


def test_the_package_and_its_plugin_import_no_torch():
    code = ("import sys, attribkit.evaluation, attribkit.evaluation.plugin\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert sorted(attribkit.evaluation.__all__) == ['MetricInput', 'MetricResult', 'evaluate']\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_lazy_names_are_the_implementations():
    import attribkit.evaluation as metrics
    from attribkit.evaluation.base import MetricInput
    from attribkit.evaluation.api import evaluate

    assert metrics.MetricInput is MetricInput and metrics.evaluate is evaluate is ak.evaluate


def test_importing_the_suite_keeps_ak_metrics_a_function():
    importlib.import_module("attribkit.evaluation.faithfulness")
    assert callable(ak.metrics) and "pixel_flipping" in {m.name for m in ak.metrics()}
