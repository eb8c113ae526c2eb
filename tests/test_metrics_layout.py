"""The metric suite lives in ``attribkit.metrics`` (one module per Quantus group); the
old ``attribkit.bench`` paths still work for one release, with a DeprecationWarning."""

import importlib
import subprocess
import sys

import pytest

import attribkit as ak

GROUP_MODULES = {
    "faithfulness": {"attribkit.metrics.faithfulness", "attribkit.metrics.faithfulness_correlation"},
    "robustness": {"attribkit.metrics.robustness"},
    "localisation": {"attribkit.metrics.localisation"},
    "complexity": {"attribkit.metrics.complexity"},
    "sanity": {"attribkit.metrics.randomisation"},
    "axiomatic": {"attribkit.metrics.axiomatic"},
}


def test_every_builtin_metric_is_implemented_in_the_module_of_its_group():
    builtin = [m for m in ak.metrics() if m.plugin == "attribkit.metrics.plugin"]
    assert len(builtin) >= 37
    for spec in builtin:
        module, _, name = spec.factory.partition(":")
        assert module in GROUP_MODULES[spec.kind], (spec.name, spec.kind, module)
        assert callable(spec.load()) and name == spec.name


@pytest.mark.parametrize(("old", "name", "new"), [
    ("attribkit.bench.metrics", "pixel_relevance", "attribkit.metrics.functional"),
    ("attribkit.bench.metrics_common", "score_rows", "attribkit.metrics.rows"),
    ("attribkit.bench.metrics_faithfulness", "pixel_flipping", "attribkit.metrics.faithfulness"),
    ("attribkit.bench.metrics_faithfulness", "sensitivity_n", "attribkit.metrics.faithfulness_correlation"),
    ("attribkit.bench.metrics_localisation", "sparseness", "attribkit.metrics.complexity"),
    ("attribkit.bench.metrics_robustness", "mprt", "attribkit.metrics.randomisation"),
    ("attribkit.bench.metrics_robustness", "completeness", "attribkit.metrics.axiomatic"),
    ("attribkit.bench.evaluate", "MetricInput", "attribkit.metrics.base"),
    ("attribkit.bench.evaluate", "evaluate", "attribkit.metrics.evaluation"),
    ("attribkit.bench.evaluate", "deletion_auc", "attribkit.metrics.faithfulness"),
    ("attribkit.bench.builtin_metrics", "SUITE", "attribkit.metrics.plugin"),
])
def test_old_paths_warn_and_give_the_moved_object(old, name, new):
    module = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"moved to {new}.{name}"):
        obj = getattr(module, name)
    assert obj is getattr(importlib.import_module(new), name)


def test_old_path_names_an_unknown_attribute():
    module = importlib.import_module("attribkit.bench.metrics")
    with pytest.raises(AttributeError, match="no attribute 'no_such_metric'.*attribkit.metrics.functional"):
        module.no_such_metric  # noqa: B018


def test_the_package_and_its_plugin_import_no_torch():
    code = ("import sys, attribkit.metrics, attribkit.metrics.plugin\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n"
            "assert sorted(attribkit.metrics.__all__) == ['MetricInput', 'MetricResult', 'evaluate']\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_lazy_names_are_the_implementations():
    import attribkit.metrics as metrics
    from attribkit.metrics.base import MetricInput
    from attribkit.metrics.evaluation import evaluate

    assert metrics.MetricInput is MetricInput and metrics.evaluate is evaluate is ak.evaluate
