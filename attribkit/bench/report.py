"""The benchmark report: a Markdown table, the JSON of every record, PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

SPEED_COLUMNS = ("ratio", "images_per_s")


def metric_table(records: list[dict]) -> tuple[list[str], list[str], dict[str, dict[str, dict]]]:
    """``(methods, metrics, cells)`` with ``cells[method][metric]`` the record."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    metrics = list(dict.fromkeys(r["metric"] for r in records if r["metric"] != "speed"))
    cells: dict[str, dict[str, dict]] = {m: {} for m in methods}
    for r in records:
        cells[r["method"]][r["metric"]] = r
    return methods, metrics, cells


def _best(values: dict[str, float], higher: bool) -> set[str]:
    finite = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    if not finite:
        return set()
    target = max(finite.values()) if higher else min(finite.values())
    return {k for k, v in finite.items() if v == target}


def warnings_by_method(records: list[dict]) -> dict[str, list[str]]:
    """The distinct warnings each method's records hold (methods without any left out).
    A peer's warnings and printed lines, kept in the speed record's ``peers`` entry,
    come under ``"method (peer)"``, the printed lines as ``"printed: ..."``."""
    found: dict[str, dict[str, None]] = {}
    for r in records:
        for text in r.get("warnings", ()):
            found.setdefault(r["method"], {})[text] = None
        for peer, entry in (r.get("peers") or {}).items():
            texts = [*entry.get("warnings", ()), *(f"printed: {line}" for line in entry.get("printed", ()))]
            for text in texts:
                found.setdefault(f"{r['method']} ({peer})", {})[text] = None
    return {m: list(texts) for m, texts in found.items()}


def markdown(records: list[dict], title: str = "attribkit benchmark", note: str | None = None) -> str:
    """Methods x metrics (mean ± s.e.m., best in bold; arrows give the better direction),
    then speed: median time per batch relative to the method's floor (a ratio below 1 for a
    method that does its floor's work is re-measured, and marked noisy if it stays there),
    the median and interquartile range in ms, peers, errors,
    and the warnings raised while the methods ran. ``note`` goes under the title."""
    methods, metrics, cells = metric_table(records)
    lines = [f"# {title}", ""] + ([note, ""] if note else [])
    header = ["method"]
    for name in metrics:
        higher = next((c[name]["higher_is_better"] for c in cells.values()
                       if "higher_is_better" in c.get(name, {})), True)  # not an error row's
        header.append(f"{name} {'↑' if higher else '↓'}")
    timed = any(r["metric"] == "speed" for r in records)  # the text task times nothing: no speed columns
    if timed:
        header += ["time / floor ↓", "ms / batch: median [IQR]", "images/s ↑"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for name in metrics:
        values = {m: cells[m].get(name, {}).get("mean") for m in methods}
        higher = next((c[name]["higher_is_better"] for c in cells.values()
                       if "higher_is_better" in c.get(name, {})), True)  # not an error row's
        best[name] = _best(values, higher)
    for m in methods:
        row = [m]
        for name in metrics:
            rec = cells[m].get(name)
            if rec is None:
                row.append("")
            elif "error" in rec:
                row.append("error")
            else:
                text = f"{rec['mean']:.3f} ± {rec['sem']:.3f}"
                row.append(f"**{text}**" if m in best[name] else text)
        speed = cells[m].get("speed")
        if timed and speed and "ratio" in speed:
            noisy = " (noisy: below its floor after re-measuring)" if speed.get("noisy") else ""
            spread = (f"{speed['median_ms']:.1f} [{speed['q1_ms']:.1f}–{speed['q3_ms']:.1f}]"
                      if "q1_ms" in speed else f"{speed['median_ms']:.1f}")
            row += [f"{speed['ratio']:.2f}× {speed['floor']}{noisy}", spread, f"{speed['images_per_s']:.1f}"]
        elif timed:
            row += ["", "", ""]
        lines.append("| " + " | ".join(row) + " |")
    peers = [(m, cells[m]["speed"]) for m in methods
             if cells[m].get("speed", {}).get("peers")]
    if peers:
        lines += ["", "## Peers (same batch, measured interleaved in the same run)", "",
                  "| method | attribkit / floor | peer | peer / floor | peer / attribkit |",
                  "|---|---|---|---|---|"]
        for m, speed in peers:
            for peer, p in speed["peers"].items():
                if "error" in p:
                    lines.append(f"| {m} | {speed['ratio']:.2f}× | {peer} | failed: {p['error'][:60]} | |")
                    continue
                lines.append(f"| {m} | {speed['ratio']:.2f}× | {peer} | {p['ratio']:.2f}× | "
                             f"{p['ratio'] / speed['ratio']:.2f}× |")
    errors = [r for r in records if "error" in r]
    if errors:
        lines += ["", "## Errors", ""] + [f"- {r['method']} / {r['metric']}: {r['error']}" for r in errors]
    warned = warnings_by_method(records)
    if warned:
        methods_of: dict[str, list[str]] = {}
        for m, texts in warned.items():
            for text in texts:
                methods_of.setdefault(text, []).append(m)
        lines += ["", "## Warnings", "",
                  "Raised while the methods ran (not printed then; each record in results.json lists its own). "
                  "A peer library's warnings and printed lines come under `method (peer)`, never under "
                  "attribkit's own method.", "",
                  "| method | warnings |", "|---|---|"]
        lines += [f"| {m} | {len(texts)} |" for m, texts in warned.items()]
        lines += [""] + [f"- {', '.join(ms)}: {text}" for text, ms in methods_of.items()]
    return "\n".join(lines) + "\n"


def write_report(records: list[dict], out: Path, *, config: Any = None, subject: Any = None,
                 metric_specs: dict | None = None, note: str | None = None) -> dict[str, Path]:
    """Write ``report.md`` (with ``note`` under its title), ``results.json`` and the PNG
    plots into ``out``."""
    from attribkit.viz import plot_curves, plot_metric_table, plot_speed, save

    out.mkdir(parents=True, exist_ok=True)
    title = "attribkit benchmark"
    if config is not None:
        title += f": {subject.name if subject is not None else config.subject_task().name}, " \
                 f"profile {config.profile}, {config.device}"
    written = {"report": out / "report.md", "json": out / "results.json"}
    written["report"].write_text(markdown(records, title, note))
    written["json"].write_text(json.dumps(records, indent=1))
    methods, metrics, cells = metric_table(records)
    ratios = {m: cells[m]["speed"]["ratio"] for m in methods if "ratio" in cells[m].get("speed", {})}
    if ratios:
        written["speed"] = save(plot_speed(ratios, floor=1.0, floor_label="floor", unit="× floor",
                                           title="time per batch relative to the floor"), out / "speed.png")
    table = {m: {k: cells[m][k]["mean"] for k in metrics if "mean" in cells[m].get(k, {})} for m in methods}
    higher = {k: next(c[k]["higher_is_better"] for c in cells.values() if "higher_is_better" in c.get(k, {}))
              for k in metrics if any("higher_is_better" in c.get(k, {}) for c in cells.values())}
    if any(table.values()):
        written["metrics"] = save(plot_metric_table(table, higher_is_better=higher), out / "metrics.png")
    curves = {kind: {m: cells[m][kind]["curves"]["mean"] for m in methods
                     if cells[m].get(kind, {}).get("curves", {}).get("mean")}
              for kind in ("deletion_auc", "insertion_auc")}
    curves = {k.replace("_auc", ""): v for k, v in curves.items() if v}
    if curves:
        written["curves"] = save(plot_curves(curves), out / "deletion_insertion.png")
    sanity = {m: cells[m]["cascading_randomization"]["curves"]["spearman_abs"] for m in methods
              if cells[m].get("cascading_randomization", {}).get("curves", {}).get("spearman_abs")}
    if sanity:
        layers = next(cells[m]["cascading_randomization"]["curves"]["layers"] for m in sanity)
        fig = plot_curves(sanity, x=list(range(1, len(layers) + 1)), kind="cascading randomisation")
        ax = fig.axes[0]
        ax.set_xlabel("layers randomised, from the output: " + ", ".join(layers))
        ax.set_ylabel("Spearman |r| with the original maps")
        written["sanity"] = save(fig, out / "sanity.png")
    return written
