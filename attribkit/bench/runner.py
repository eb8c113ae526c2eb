"""``attribkit bench``: which method is fast and which is faithful, in one run.

For each method: its maps on the task's images, every applicable metric of the
profile, and its speed relative to its floor (:mod:`attribkit.bench.speed`).
Every (method, metric) result is appended to ``results.jsonl``
(:mod:`attribkit.bench.store`) as soon as it is known; re-running the same
command skips what is already there. Warnings raised while a method runs are
kept in its records (:mod:`attribkit.bench.recording`) and counted in the
report, not printed, and the methods' own progress bars stay silent (the run's
bar counts results). The subject comes from a task (:mod:`attribkit.bench.tasks`),
which this module knows only through :class:`BenchConfig`.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from attribkit.api import explain, get_method
from attribkit.bench.config import BenchConfig
from attribkit.bench.recording import distinct, recording_warnings
from attribkit.bench.selection import (  # noqa: F401 - bench_method re-exported for older imports
    bench_method,
    choose_methods,
    choose_metrics,
    runnable,
)
from attribkit.bench.speed import measure_speed
from attribkit.bench.store import ResultsFileWarning, ResultStore
from attribkit.bench.subject import Subject, default_layer, load_subject
from attribkit.evaluation.base import MetricInput
from attribkit.evaluation.functional import pixel_relevance
from attribkit.progress import quiet
from attribkit.registry import MethodSpec, MetricSpec


def write_summary(records: list[dict], out: Path) -> Path:
    """``out/summary.json``: ``{method: {metric: mean score}}`` (speed: the ratio to the
    floor), for every result without an error."""
    summary: dict[str, dict[str, float]] = {}
    for r in records:
        value = r.get("ratio") if r["metric"] == "speed" else r.get("mean")
        if "error" not in r and isinstance(value, (int, float)):
            summary.setdefault(r["method"], {})[r["metric"]] = value
    path = Path(out) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, sort_keys=True))
    return path


def run_bench(config: BenchConfig, *, progress: bool = True,
              log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) a benchmark; returns this run's records and writes the report.

    On Ctrl-C (``KeyboardInterrupt``) the results so far stay in ``results.jsonl``,
    a partial report is written from them, and a ``KeyboardInterrupt`` is raised
    whose message says where that report is and how to resume."""
    from attribkit.bench.report import write_report

    own_runner = getattr(config.subject_task(), "run_bench", None)
    if own_runner is not None:  # a task that is not images brings its runner
        return own_runner(config, progress=progress, log=log)
    settings = config.settings()
    for name, options in config.method_options.items():
        get_method(name).bind_options(options)  # unknown methods / options fail before any work
    subject = load_subject(config, settings["n_images"], log)
    chosen = runnable(choose_methods(config), subject, log, asked=bool(config.methods))
    scored = choose_metrics(config, subject)
    out = Path(config.out)
    store = ResultStore(out / "results.jsonl", config.run_key())
    layer = default_layer(subject)
    wanted = {(m.name, k) for m in chosen for k in ["speed", *[s.name for s in scored]]}
    bar = _progress(len(wanted), progress)

    def records_in(store: ResultStore) -> list[dict]:
        return [r for (m, _k), r in store.records.items() if m in {s.name for s in chosen}]

    def write(records: list[dict], note: str | None = None) -> Path:
        write_summary(records, out)
        return write_report(records, out, config=config, subject=subject,
                            metric_specs={s.name: s for s in scored}, note=note)["report"]

    try:
        with quiet():  # the bench's bar counts results; the methods' own bars would only interleave
            for spec in chosen:
                _bench_method(spec, subject, config, settings, layer, scored, store, bar)
    except KeyboardInterrupt as exc:
        bar.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResultsFileWarning)  # shown when the run started
            done = ResultStore(store.path, store.run)  # what reached the file
        n = len(wanted & done.records.keys())
        path = write(records_in(done), f"Partial: interrupted after {n} of {len(wanted)} results; "
                                       "run the same command again to resume.")
        raise KeyboardInterrupt(f"interrupted: partial report ({n} of {len(wanted)} results) in {path}; "
                                "run the same command again to resume") from exc
    bar.close()
    records = records_in(store)
    write(records)
    return records


def _bench_method(spec: MethodSpec, subject: Subject, config: BenchConfig, settings: dict, layer: Any,
                  scored: list[MetricSpec], store: ResultStore, bar: Any) -> None:
    """Compute and store the results of ``spec`` that ``store`` lacks. Each record keeps
    the warnings raised while it was computed (the maps' warnings go into every metric's)."""
    todo = [k for k in ["speed", *[s.name for s in scored]] if (spec.name, k) not in store]
    bar.update(1 + len(scored) - len(todo))
    if not todo:
        return
    bar.set_description(spec.name)
    error = None
    with recording_warnings() as shared:
        try:
            relevance, explain_fn = _relevance(spec, subject, config, layer)
        except Exception as exc:  # noqa: BLE001 - a method that cannot run on this model
            error = f"{type(exc).__name__}: {exc}"
    if error is not None:
        for key in todo:
            store.add({"method": spec.name, "metric": key, "error": error, "warnings": shared})
        bar.update(len(todo))
        return
    for metric in scored:
        if metric.name in todo:
            with recording_warnings() as own:
                record = _score(metric, spec, subject, relevance, explain_fn, config, settings)
            store.add({**record, "warnings": distinct([*shared, *own])})
            bar.update(1)
    if "speed" in todo:
        with recording_warnings() as own:
            record = measure_speed(spec, subject, config, settings, layer)
        store.add({"method": spec.name, "metric": "speed", **record, "warnings": own})
        bar.update(1)


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar over ``total`` results, or a silent stand-in."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        enabled = False
    if not enabled:
        class _Silent:
            def update(self, n: int = 1) -> None: ...
            def set_description(self, s: str) -> None: ...
            def close(self) -> None: ...
        return _Silent()
    return tqdm(total=total, unit="result", dynamic_ncols=True)


def _relevance(spec: MethodSpec, subject: Subject, config: BenchConfig,
               layer: Any) -> tuple[torch.Tensor, Callable]:
    """The method's pixel maps of the subject's images, and the explain function the
    re-explaining metrics call (on a copy of the model too: the same layer by name)."""
    size = tuple(subject.inputs.shape[-2:])
    kwargs = {"layer": layer} if "layer" in spec.needs else {}
    options = config.options_for(spec)

    def explain_fn(model: Any, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if "layer" in spec.needs and model is not subject.model:
            from attribkit.torch.layers import layer_name

            kw = {"layer": layer_name(subject.model, layer), **options}  # the same layer in a copy
        else:
            kw = {**kwargs, **options}
        with config.autocast():
            values = explain(model, inputs, targets, method=spec, batch_size=config.batch_size, **kw).values
        return pixel_relevance(values, size)

    return explain_fn(subject.model, subject.inputs, subject.targets), explain_fn


def _score(metric: MetricSpec, spec: MethodSpec, subject: Subject, relevance: torch.Tensor,
           explain_fn: Callable, config: BenchConfig, settings: dict) -> dict:
    """One metric's record for one method (its error when it fails: the run goes on)."""
    reexplains = metric.kind == "sanity" or "method" in metric.needs  # robustness, focus, ...
    few = reexplains or metric.name in settings.get("few_images", ())
    n = min(settings["sanity_images"], len(subject.inputs)) if few else len(subject.inputs)
    data = MetricInput(
        predict=subject.model, inputs=subject.inputs[:n], relevance=relevance[:n],
        targets=subject.targets_of(n), masks=None if subject.masks is None else subject.masks[:n],
        model=subject.model, explain=explain_fn, batch_size=256)
    options = settings["metric_options"].get(metric.name, {})
    record = {"method": spec.name, "metric": metric.name, "kind": metric.kind,
              "higher_is_better": metric.higher_is_better}
    start = time.perf_counter()
    try:
        with config.autocast():
            result = metric.load()(data, **metric.bind_options(options))
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        return {**record, "error": f"{type(exc).__name__}: {exc}"}
    return {**record, **_summary(result.scores), "curves": result.curves,
            "seconds": time.perf_counter() - start}


def _summary(scores: torch.Tensor) -> dict[str, float]:
    """Mean, standard error of the mean and count of per-image scores."""
    scores = scores.detach().double().cpu()
    n = len(scores)
    std = float(scores.std()) if n > 1 else 0.0
    return {"mean": float(scores.mean()), "sem": std / math.sqrt(n) if n > 1 else 0.0, "n": n}

