"""The report of a benchmark run folder (``attribkit bench --out DIR``).

It reads the folder's ``results.json`` (or, when that is missing, e.g. after an
interrupted run, the records of ``results.jsonl``) and draws: the methods x
metrics table (mean ± s.e.m., the best per metric in bold, sortable by any
column), each method's time per batch relative to its floor (and the peers'),
the mean deletion and insertion curves and the cascading-randomisation sanity
curves, all as inline SVG.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from attribkit.bench.report import metric_table, warnings_by_method
from attribkit.report.page import esc, number, page, sort_value, write
from attribkit.report.svg import bar_chart, line_chart


def read_records(folder: str | Path) -> list[dict]:
    """The result records of a bench folder: ``results.json``, else the last record per
    (method, metric) of ``results.jsonl``'s latest run."""
    folder = Path(folder)
    summary = folder / "results.json"
    if summary.is_file():
        return list(json.loads(summary.read_text()))
    lines = folder / "results.jsonl"
    if not lines.is_file():
        raise FileNotFoundError(2, "not a bench run folder (it has no results.json or results.jsonl)",
                                str(folder))
    found: dict[tuple[str, str], dict] = {}
    run = None
    for line in lines.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line: the runner drops it too
        if isinstance(record, dict) and {"method", "metric"} <= record.keys():
            run = record.get("run", run)
            found[(record["method"], record["metric"])] = record
    return [r for r in found.values() if r.get("run") == run]


def is_bench_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``attribkit bench``."""
    path = Path(path)
    return path.is_dir() and ((path / "results.json").is_file() or (path / "results.jsonl").is_file())


def bench_report(folder: str | Path, out: str | Path | None = None, *, title: str | None = None) -> Path:
    """Write the self-contained HTML report of the bench run in ``folder`` to ``out``
    (default ``folder/report.html``); returns its path."""
    folder = Path(folder)
    records = read_records(folder)
    out = Path(out) if out is not None else folder / "report.html"
    methods, metrics, cells = metric_table(records)
    higher = {k: next((c[k].get("higher_is_better", True) for c in cells.values() if k in c), True)
              for k in metrics}
    sections = [_table(methods, metrics, cells, higher)]
    figures = [f for f in (_speed(methods, cells), *_curves(methods, cells), _sanity(methods, cells)) if f]
    if figures:
        sections.append("<h2>Speed and curves</h2><div class=\"figures\">" + "".join(figures) + "</div>")
    sections.append(_problems(records))
    heading = title or f"attribkit benchmark: {folder.name}"
    subtitle = f"{len(methods)} methods · {len(metrics)} metrics · from {folder}"
    return write(page(heading, "\n".join(s for s in sections if s), {"kind": "bench"}, subtitle=subtitle), out)


def _best(cells: dict, methods: list[str], metric: str, higher: bool) -> set[str]:
    values = {m: cells[m].get(metric, {}).get("mean") for m in methods}
    finite = {m: v for m, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if not finite:
        return set()
    top = max(finite.values()) if higher else min(finite.values())
    return {m for m, v in finite.items() if v == top}


def _table(methods: list[str], metrics: list[str], cells: dict, higher: dict[str, bool]) -> str:
    def th(key: str, label: str, cls: str = "num") -> str:
        return (f"<th scope=\"col\" class=\"{cls}\" data-key=\"{esc(key)}\"><button type=\"button\" "
                f"class=\"sort\">{label}</button></th>")

    head = [th("method", "method", "")]
    head += [th(k, f"{esc(k)} {'↑' if higher[k] else '↓'}") for k in metrics]
    head += [th("ratio", "time / floor ↓"), th("images_per_s", "images/s ↑"), th("median_ms", "ms / batch ↓")]
    best = {k: _best(cells, methods, k, higher[k]) for k in metrics}
    rows = []
    for m in methods:
        row = [f"<th scope=\"row\" data-key=\"method\" data-value=\"{esc(m)}\">{esc(m)}</th>"]
        for k in metrics:
            rec = cells[m].get(k)
            if rec is None:
                row.append(f"<td class=\"num\" data-key=\"{esc(k)}\" data-value=\"\"></td>")
            elif "error" in rec:
                row.append(f"<td class=\"num wrong\" data-key=\"{esc(k)}\" data-value=\"\" "
                           f"title=\"{esc(rec['error'])}\">error</td>")
            else:
                cls = "num best" if m in best[k] else "num"
                row.append(f"<td class=\"{cls}\" data-key=\"{esc(k)}\" data-value=\"{sort_value(rec.get('mean'))}\">"
                           f"{number(rec.get('mean'))} <span class=\"sem\">± {number(rec.get('sem'))}</span></td>")
        speed = cells[m].get("speed", {})
        floor = f" <span class=\"sem\">{esc(speed['floor'])}</span>" if speed.get("floor") else ""
        row.append(f"<td class=\"num\" data-key=\"ratio\" data-value=\"{sort_value(speed.get('ratio'))}\">"
                   f"{number(speed.get('ratio'), 2)}×{floor}</td>" if "ratio" in speed else
                   "<td class=\"num\" data-key=\"ratio\" data-value=\"\"></td>")
        for key, digits in (("images_per_s", 1), ("median_ms", 1)):
            row.append(f"<td class=\"num\" data-key=\"{key}\" data-value=\"{sort_value(speed.get(key))}\">"
                       f"{number(speed.get(key), digits) if key in speed else ''}</td>")
        rows.append(f"<tr data-method=\"{esc(m)}\">{''.join(row)}</tr>")
    note = ("<p class=\"note\">Mean ± standard error over the images; the best per metric in bold; "
            "arrows give the better direction. Click a column header to sort by it.</p>")
    return (f"<h2>Methods × metrics</h2>{note}<table id=\"metrics\" class=\"sortable\"><thead><tr>"
            f"{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _speed(methods: list[str], cells: dict) -> str:
    ratios: dict[str, float] = {}
    for m in methods:
        speed = cells[m].get("speed", {})
        if "ratio" not in speed:
            continue
        ratios[m] = float(speed["ratio"])
        for peer, p in (speed.get("peers") or {}).items():
            if "ratio" in p:
                ratios[f"{m} ({peer})"] = float(p["ratio"])
    if not ratios:
        return ""
    svg = bar_chart(ratios, title="time per batch / floor", unit="× floor", reference=1.0,
                    reference_label="floor")
    return _figure(svg, "Median time per batch relative to the method's floor (one forward, or forward + "
                        "backward, or the forwards a perturbation method makes), measured interleaved; "
                        "peers in brackets.")


def _curves(methods: list[str], cells: dict) -> list[str]:
    out = []
    for kind, word in (("deletion_auc", "deletion"), ("insertion_auc", "insertion")):
        series = {}
        for m in methods:
            curves = cells[m].get(kind, {}).get("curves") or {}
            if curves.get("mean"):
                x = curves.get("x") or [i / (len(curves["mean"]) - 1 or 1) for i in range(len(curves["mean"]))]
                series[m] = (x, curves["mean"])
        if series:
            svg = line_chart(series, title=f"{word} curves", xlabel=f"fraction of pixels {word[:-3]}ed "
                             "(most relevant first)", ylabel="score of the class")
            better = "lower" if word == "deletion" else "higher"
            out.append(_figure(svg, f"Mean {word} curve per method; the area under it is {kind} "
                                    f"({better} is better)."))
    return out


def _sanity(methods: list[str], cells: dict) -> str:
    series, layers = {}, None
    for m in methods:
        curves = cells[m].get("cascading_randomization", {}).get("curves") or {}
        if curves.get("spearman_abs"):
            layers = layers or curves.get("layers")
            series[m] = (list(range(len(curves["spearman_abs"]))), curves["spearman_abs"])
    if not series:
        return ""
    svg = line_chart(series, title="sanity check: cascading randomisation",
                     xlabel="layers randomised, from the output", ylabel="Spearman |r| with the original",
                     xticks=[f"+{name}" for name in (layers or [])] or None)
    return _figure(svg, "Rank correlation of each method's maps with its maps after the layers are randomised "
                        "one by one from the output: a method that depends on the weights falls fast.")


def _problems(records: list[dict]) -> str:
    parts = []
    errors = [r for r in records if "error" in r]
    if errors:
        parts.append("<h2>Errors</h2><ul class=\"plain\">" + "".join(
            f"<li>{esc(r['method'])} / {esc(r['metric'])}: {esc(r['error'])}</li>" for r in errors) + "</ul>")
    warned: dict[str, Any] = warnings_by_method(records)
    if warned:
        parts.append("<h2>Warnings</h2><p class=\"note\">Raised while the methods ran (not printed then).</p>"
                     "<ul class=\"plain\">" + "".join(
                         f"<li>{esc(m)}: {esc(text)}</li>" for m, texts in warned.items() for text in texts)
                     + "</ul>")
    return "".join(parts)
