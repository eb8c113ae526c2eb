"""``attribkit bench --task text``: the text methods and the token metrics on the keyword
task (:mod:`attribkit.bench.tasks.text`), ``random`` as the baseline.

Each method explains the task's texts once, for their labels; each token metric
(:mod:`attribkit.evaluation.tokens`; the metrics whose ``needs`` hold ``tokens``) scores
the result, one score per text. Every (method, metric) record goes to ``results.jsonl``
as soon as it is known (re-running the same command skips what is there), with its
per-text ``scores``; ``report.md``, ``results.json`` and ``summary.json`` are written as
for the image tasks, and ``texts.html`` shows every text's tokens per method with the
evidence outlined (:func:`attribkit.report.text.write_text_report`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribkit.api import explain, methods, metrics
from attribkit.bench.config import BenchConfig
from attribkit.bench.recording import distinct, recording_warnings
from attribkit.bench.selection import bench_method
from attribkit.bench.store import ResultStore
from attribkit.errors import InvalidOptionError
from attribkit.progress import quiet
from attribkit.registry import MethodSpec, MetricSpec


def text_methods(config: BenchConfig) -> list[MethodSpec]:
    """``--methods``, or every registered method with a text kernel (``spec.text``; the quick
    profile: attribkit's own), ``random`` always among them (the baseline)."""
    if config.methods:
        chosen = [bench_method(m) for m in config.methods]
    else:
        chosen = [s for s in methods() if s.text is not None]
        if config.settings()["builtin_only"]:
            chosen = [s for s in chosen if (s.plugin or "").startswith("attribkit.")]
    if "random" not in {s.name for s in chosen}:
        chosen.append(bench_method("random"))
    return chosen


def text_metrics(config: BenchConfig) -> list[MetricSpec]:
    """``--metrics`` (token metrics only) or every registered token metric."""
    from attribkit.api import get_metric

    token = [m for m in metrics() if "tokens" in m.needs]
    if not config.metrics:
        return token
    chosen = [get_metric(m) for m in config.metrics]
    other = [m.name for m in chosen if "tokens" not in m.needs]
    if other:
        raise InvalidOptionError(f"--task text scores token metrics; {', '.join(other)} score images "
                                 f"(token metrics: {', '.join(m.name for m in token)})")
    return chosen


def run_text_bench(config: BenchConfig, *, progress: bool = True,
                   log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) the text benchmark; returns its records and writes the reports."""
    from attribkit.bench.report import write_report
    from attribkit.bench.runner import _progress, _summary, write_summary
    from attribkit.evaluation.token_api import evaluate_tokens

    settings = config.settings()
    for name, options in config.method_options.items():
        bench_method(name).bind_options(options)  # unknown methods / options fail before any work
    chosen, scored = text_methods(config), text_metrics(config)
    task = config.subject_task()
    device = torch.device(config.device)
    model = task.model(config.seed, log).to(device).eval()
    data = task.data(settings["n_images"], config.seed)
    tok = task.tokenizer()
    labels = torch.from_numpy(data.labels).to(device)
    out = Path(config.out)
    store = ResultStore(out / "results.jsonl", config.run_key())
    bar = _progress(len(chosen) * len(scored), progress)
    results: dict[str, Any] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    with quiet():
        for spec in chosen:
            bar.set_description(spec.name)
            record = {"method": spec.name}
            with recording_warnings() as shared:
                try:
                    start = time.perf_counter()
                    result = explain(model, data.texts, labels, method=spec, tokenizer=tok,
                                     batch_size=config.batch_size, **config.options_for(spec))
                    seconds = time.perf_counter() - start
                except Exception as exc:  # noqa: BLE001 - a method that cannot run: recorded, the run goes on
                    record["error"] = f"{type(exc).__name__}: {exc}"
            if "error" in record:
                for metric in scored:
                    if (spec.name, metric.name) not in store:
                        store.add({**record, "metric": metric.name, "warnings": shared})
                bar.update(len(scored))
                continue
            results[spec.name] = result
            evidence = data.evidence[:, :result.values.shape[1]]
            for metric in scored:
                if (spec.name, metric.name) not in store:
                    with recording_warnings() as own:
                        store.add({**_score(metric, model, data.texts, result, tok, evidence, settings,
                                            config, evaluate_tokens, _summary),
                                   "explain_seconds": seconds, "warnings": distinct([*shared, *own])})
                done = store.records[(spec.name, metric.name)]
                if "scores" in done:
                    scores.setdefault(spec.name, {})[metric.name] = np.asarray(done["scores"], dtype=float)
                bar.update(1)
    bar.close()
    records = [r for (m, _k), r in store.records.items() if m in {s.name for s in chosen}]
    write_summary(records, out)
    write_report(records, out, config=config, metric_specs={s.name: s for s in scored})
    if results:
        from attribkit.report.text import write_text_report

        write_text_report(out / "texts.html", results, scores, f"attribkit benchmark: {task.name}, tokens",
                          evidence=[row[:len(t)].tolist() for row, t in
                                    zip(data.evidence, next(iter(results.values())).tokens)])
    return records


def _score(metric: MetricSpec, model: Any, texts: list[str], result: Any, tok: Any, evidence: np.ndarray,
           settings: dict, config: BenchConfig, evaluate_tokens: Callable, summary: Callable) -> dict:
    """One token metric's record for one method (its error when it fails: the run goes on)."""
    record = {"method": result.method, "metric": metric.name, "kind": metric.kind,
              "higher_is_better": metric.higher_is_better}
    start = time.perf_counter()
    try:
        found = evaluate_tokens(model, texts, result, metrics=[metric.name], tokenizer=tok, evidence=evidence,
                                batch_size=max(256, config.batch_size),
                                options={metric.name: settings["metric_options"].get(metric.name, {})})
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        return {**record, "error": f"{type(exc).__name__}: {exc}"}
    per_text = found[metric.name].scores.double()
    kept = per_text[~per_text.isnan()]
    return {**record, **(summary(kept) if len(kept) else {"mean": float("nan"), "sem": 0.0, "n": 0}),
            "scores": [None if v != v else float(v) for v in per_text.tolist()],
            "curves": found[metric.name].curves, "seconds": time.perf_counter() - start}
