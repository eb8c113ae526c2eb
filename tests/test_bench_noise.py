"""What a peer library prints or warns while the bench times it is kept under the
peer's name (its entry in the speed record, ``method (peer)`` in the reports), never
under attribkit's own method, and never reaches the terminal."""

import sys
import warnings

import pytest
import torch

from attribkit.api import get_method
from attribkit.bench import speed as speed_module
from attribkit.bench.recording import PROGRESS_BAR, Captured, printed_lines
from attribkit.bench.report import markdown, warnings_by_method
from attribkit.bench.runner import BenchConfig, run_bench
from attribkit.hookspecs import hookimpl
from attribkit.host import get_host
from attribkit.progress import progress
from attribkit.registry import MethodSpec

TINY = "attribkit.testing:TinyCNN"
SAID = "no value was provided for `fc_layer`, thus set to 'fc'."
WARNED = "UserWarning: this peer is deprecated"


def noisy_peer(model, inputs, targets, layer):
    """A peer that prints to stdout, draws a tqdm bar on stderr and warns at every call."""
    from tqdm import tqdm

    print(SAID)
    for _ in tqdm(range(2)):
        pass
    print("peer: to stderr", file=sys.stderr)
    warnings.warn("this peer is deprecated", UserWarning)
    return model(inputs)


def failing_peer(model, inputs, targets, layer):
    print("about to fail")
    raise RuntimeError("peer broke")


@pytest.fixture
def bench_with_noisy_peers(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(speed_module, "peer_calls", lambda method: {"noisy": noisy_peer, "broken": failing_peer})
    config = BenchConfig(out=tmp_path, model=TINY, methods=["saliency"], metrics=["deletion_auc"], n_images=4)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        records = run_bench(config, progress=False, log=lambda s: None)
    return records, capfd.readouterr(), [str(w.message) for w in leaked], tmp_path


def test_a_peers_prints_and_warnings_go_under_its_name_only(bench_with_noisy_peers):
    records, terminal, leaked, out = bench_with_noisy_peers
    assert SAID not in terminal.out + terminal.err and "to stderr" not in terminal.err
    assert "%|" not in terminal.err and leaked == []
    speed = next(r for r in records if r["metric"] == "speed")
    noisy, broken = speed["peers"]["noisy"], speed["peers"]["broken"]
    calls = 1 + 1 + speed["repeats"]  # the trial call, the warm-up round, the timed rounds
    assert noisy["printed"] == [f"{SAID} (×{calls} calls)", f"{PROGRESS_BAR} (×{calls} calls)",
                                f"peer: to stderr (×{calls} calls)"]
    assert len(noisy["warnings"]) == 1 and noisy["warnings"][0].startswith(WARNED)
    assert broken == {"error": "RuntimeError: peer broke", "printed": ["about to fail"]}
    for r in records:  # attribkit's own rows hold none of it
        assert not any("deprecated" in w for w in r.get("warnings", ())), r
    report = (out / "report.md").read_text()
    assert "| saliency (noisy) | 4 |" in report and "| saliency (broken) | 1 |" in report
    assert f"- saliency (noisy): {WARNED}" in report
    assert f"- saliency (noisy): printed: {SAID} (×{calls} calls)" in report
    assert "| saliency |" not in report.split("## Warnings")[1]


def test_warnings_by_method_keys_peers_apart():
    records = [{"method": "deconvnet", "metric": "deletion_auc", "mean": 0.5, "sem": 0.1,
                "warnings": ["W: own (a.py:1)"]},
               {"method": "deconvnet", "metric": "speed", "warnings": [], "ratio": 1.0, "floor": "forward",
                "median_ms": 1.0, "images_per_s": 1.0,
                "peers": {"captum": {"ratio": 1.0, "warnings": ["UserWarning: x (captum/y.py:63)"]},
                          "pytorch-grad-cam": {"ratio": 2.0, "printed": ["hello"]}}}]
    assert warnings_by_method(records) == {"deconvnet": ["W: own (a.py:1)"],
                                           "deconvnet (captum)": ["UserWarning: x (captum/y.py:63)"],
                                           "deconvnet (pytorch-grad-cam)": ["printed: hello"]}
    text = markdown(records)
    assert "- deconvnet (captum): UserWarning: x (captum/y.py:63)" in text
    assert "- deconvnet: UserWarning" not in text


def test_captured_lines_and_warnings_accumulate_across_calls():
    seen = Captured()
    call = seen.wrap(lambda: (print("a\rb\n\n  b  "), warnings.warn("w1"), 7)[-1])
    assert call() == 7 and call() == 7
    assert seen.printed == {"a": 2, "b": 2}
    assert [w.split(" (")[0] for w in seen.warnings] == ["UserWarning: w1"]
    assert seen.record()["printed"] == ["a (×2 calls)", "b (×2 calls)"]
    assert Captured().record() == {}
    assert printed_lines("\r  0%|   | 0/2\r 50%|#  | 1/2\r100%|##| 2/2\n") == [PROGRESS_BAR]


def test_a_warnings_filter_of_error_fails_the_peer_not_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(speed_module, "peer_calls", lambda method: {"noisy": noisy_peer})
    config = BenchConfig(out=tmp_path, model=TINY, methods=["saliency"], metrics=["deletion_auc"],
                         n_images=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        records = run_bench(config, progress=False, log=lambda s: None)
    speed = next(r for r in records if r["metric"] == "speed")
    assert "ratio" in speed and speed["peers"]["noisy"]["error"] == "UserWarning: this peer is deprecated"
    assert torch.isfinite(torch.tensor(speed["ratio"]))


class BarPlugin:
    """``fake.bar``: the random map, inside one of attribkit's progress bars."""

    @hookimpl
    def register_methods(self, register):
        def bar_then_random(model, inputs, **kwargs):
            with progress(3, "fake steps") as bar:
                bar.update(3)
            return get_method("random").load()(model, inputs, **kwargs)

        register(MethodSpec(name="fake.bar", family="other", factory=lambda: bar_then_random,
                            needs=("forward",), options={"seed": 0}))


def test_methods_progress_bars_stay_silent_inside_the_bench(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("ATTRIBKIT_PROGRESS", "always")  # would draw the bar at once
    get_host().add_plugin(BarPlugin(), "fake-bar")
    with progress(1, "outside the bench") as bar:  # the setting works: a bar is drawn here
        bar.update(1)
    assert "outside the bench" in capfd.readouterr().err
    config = BenchConfig(out=tmp_path, model=TINY, methods=["fake.bar"], metrics=["deletion_auc"], n_images=4)
    run_bench(config, progress=False, log=lambda s: None)
    assert "fake steps" not in capfd.readouterr().err


def test_peers_false_leaves_the_peers_out_and_keeps_the_default_key(tmp_path, monkeypatch):
    monkeypatch.setattr(speed_module, "peer_calls", lambda method: {"noisy": noisy_peer})
    config = BenchConfig(out=tmp_path, model=TINY, methods=["saliency"], metrics=["deletion_auc"], n_images=4,
                         peers=False)
    records = run_bench(config, progress=False, log=lambda s: None)
    assert next(r for r in records if r["metric"] == "speed")["peers"] == {}
    with_peers = BenchConfig(out=tmp_path, model=TINY, n_images=4)
    assert config.run_key() != with_peers.run_key()  # their speed records differ: no resume across
    # the key of a default config is the one computed before the field existed (older results resume)
    import dataclasses
    import hashlib
    import json

    fields = {k: v for k, v in dataclasses.asdict(with_peers).items()
              if k not in ("out", "methods", "metrics", "task", "model", "weights", "data", "peers")}
    fields["subject"] = with_peers.subject_task().identity()
    old_key = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert with_peers.run_key() == old_key
