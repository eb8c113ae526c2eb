"""``attribkit methods`` and ``attribkit metrics`` fit the terminal (issue 28: the methods table
was about 340 characters wide); ``--wide`` and ``--json`` give everything."""

import json

import pytest

from attribkit import cli
from attribkit.cli import main
from attribkit.tables import (
    CELL_MAX,
    METHOD_COLUMNS,
    fit_table,
    format_table,
    method_rows,
    metric_columns,
)

ROWS = [{"name": "a_rather_long_method_name", "family": "gradient", "plugin": "attribkit.families.gradient.x" * 2,
         "description": "word " * 30},
        {"name": "b", "family": "cam", "plugin": "captum", "description": "short"}]
COLUMNS = ("name", "plugin", "family", "description")


def test_fit_table_keeps_the_first_column_and_cuts_the_rest_to_the_width():
    table, hidden = fit_table(ROWS, COLUMNS, 62, ("name", "family", "plugin"))
    lines = table.splitlines()
    assert max(len(line) for line in lines) == 62 and hidden == ["plugin"]
    assert lines[0].split() == ["name", "family", "description"]
    row = lines[2]
    assert row.startswith("a_rather_long_method_name  gradient  word word") and row.endswith("…")
    assert lines[3].split() == ["b", "cam", "short"]
    # wide enough: the plugin column comes back, its cells cut to CELL_MAX
    table, hidden = fit_table(ROWS, COLUMNS, 120, ("name", "family", "plugin"))
    assert hidden == [] and max(len(line) for line in table.splitlines()) == 120
    plugin = table.splitlines()[2].split()[1]
    assert len(plugin) == CELL_MAX and plugin.endswith("…") and ROWS[0]["plugin"].startswith(plugin[:-1])
    # the natural table when it fits
    assert fit_table(ROWS[1:], COLUMNS, 200, ("name",)) == (format_table(ROWS[1:], COLUMNS), [])


def test_too_narrow_for_the_description_leaves_it_out():
    table, hidden = fit_table(ROWS, COLUMNS, 30, ("name", "family"))
    assert hidden == ["plugin", "family", "description"]
    assert table.splitlines()[0].split() == ["name"]  # family + a description would not fit


@pytest.mark.parametrize("width", [80, 120])
def test_methods_table_fits_the_terminal(monkeypatch, capsys, width):
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= width
    names = {line.split()[0] for line in lines[2:] if line and not line.startswith("(")}
    assert names >= {r["name"] for r in method_rows()}  # every name in full
    note = " ".join(line for line in lines if not line.startswith(tuple(names)))
    assert "left out to fit" in note and "--wide" in note


def test_wide_and_json_are_unchanged(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["methods", "--wide"]) == 0
    assert capsys.readouterr().out == format_table(method_rows(), METHOD_COLUMNS) + "\n"
    assert main(["methods", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(method_rows(), default=repr))


def test_a_pipe_without_columns_gets_the_whole_table(monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["methods"]) == 0  # capsys is no terminal: nothing is cut for a script reading it
    assert capsys.readouterr().out == format_table(method_rows(), METHOD_COLUMNS) + "\n"


def test_metrics_show_their_cost_in_forwards_when_known(monkeypatch, capsys):
    rows = [{"name": "deletion_auc", "kind": "faithfulness", "better": "lower", "needs": "forward",
             "plugin": "attribkit.evaluation.plugin", "forwards": "steps + 1 (33)", "description": "d " * 40},
            {"name": "sparseness", "kind": "complexity", "better": "higher", "needs": "", "plugin": "p",
             "forwards": "0", "description": "Gini index"}]
    assert metric_columns(rows)[:4] == ("name", "kind", "better", "forwards")
    assert "forwards" not in metric_columns([{**r, "forwards": ""} for r in rows])
    monkeypatch.setattr(cli, "metric_rows", lambda: rows)
    monkeypatch.setenv("COLUMNS", "70")
    assert main(["metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "better", "forwards", "description"]
    assert max(len(line) for line in lines) == 70
    assert lines[2].split()[:5] == ["deletion_auc", "lower", "steps", "+", "1"]
