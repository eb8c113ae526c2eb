"""The attribution-guided training experiment (`attribkit bench feedback`) on a tiny profile."""

import json

import pytest

from attribkit.bench.feedback import METRICS, VARIANTS, FeedbackConfig, run_feedback
from attribkit.cli import build_parser, main


def test_feedback_tiny_profile_writes_the_table_results_and_figures(tmp_path):
    results = run_feedback(FeedbackConfig(out=tmp_path, profile="tiny", seeds=2), log=None)
    assert {p.name for p in tmp_path.iterdir()} == {
        "results.json", "table.md", "gradcam_plain_vs_guided.png", "gradcam_centred_plain_vs_centre.png"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and saved["variants"] == list(VARIANTS)
    assert len(saved["runs"]) == 2 * len(VARIANTS)
    for variant in VARIANTS:
        for key, _ in METRICS:
            row = saved["summary"][variant][key]
            assert set(row) == {"mean", "std"} and row["std"] >= 0
        assert 0 <= saved["summary"][variant]["acc_broken"]["mean"] <= 1
        assert 0 <= saved["summary"][variant]["gradcam_mass"]["mean"] <= 1
    table = (tmp_path / "table.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(VARIANTS)  # header, rule, one row per variant
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "accuracy, cue broken" in lines[0] and "Grad-CAM relevance mass" in lines[0]
    assert all(f"`{v}`" in table for v in VARIANTS)
    assert "±" in lines[2] and results["table"] in table


def test_feedback_config_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        FeedbackConfig(out=tmp_path, profile="huge").settings()
    with pytest.raises(ValueError, match="variants"):
        FeedbackConfig(out=tmp_path, variants=("plain", "magic")).settings()
    assert FeedbackConfig(out=tmp_path, seeds=3).settings()["seeds"] == 3


def test_bench_cli_parses_feedback_and_keeps_the_methods_form():
    parser = build_parser()
    args = parser.parse_args(["bench", "feedback", "--out", "d", "--profile", "full", "--seeds", "3"])
    assert (args.experiment, args.out, args.profile, args.seeds) == ("feedback", "d", "full", 3)
    args = parser.parse_args(["bench", "--profile", "quick", "--out", "x"])
    assert (args.experiment, args.profile, args.out, args.seeds) == ("methods", "quick", "x", None)
    args = parser.parse_args(["bench", "--out", "x", "feedback"])
    assert args.experiment == "feedback" and args.seeds is None
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "feedbak"])
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "feedback", "--profile", "tiny"])


def test_bench_feedback_cli_refuses_methods_options(tmp_path, capsys):
    assert main(["bench", "feedback", "--out", str(tmp_path), "--methods", "gradcam"]) == 2
    assert "--methods" in capsys.readouterr().err


def test_bench_feedback_cli_runs(tmp_path, monkeypatch, capsys):
    import attribkit.bench.feedback as feedback

    monkeypatch.setitem(feedback.PROFILES, "quick", feedback.PROFILES["tiny"])  # seconds, not minutes
    assert main(["bench", "feedback", "--out", str(tmp_path), "--seeds", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| `plain` |" in printed and (tmp_path / "table.md").exists()
