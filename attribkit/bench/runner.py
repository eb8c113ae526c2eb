"""``attribkit bench``: which method is fast and which is faithful, in one run.

For each method: its maps on ``n_images`` images, every applicable registered
metric, and its speed relative to its floor (measured interleaved with the
floor in the same run) and to peer libraries. Every (method, metric) result is
appended to ``results.jsonl`` as soon as it is known; re-running the same
command skips what is already there. Warnings raised while a method runs are
kept in its records (``"warnings"``) and counted in the report, not printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from attribkit.api import explain, get_method, get_metric, methods, metrics
from attribkit.evaluation.base import MetricInput
from attribkit.evaluation.functional import pixel_relevance
from attribkit.bench.peers import peer_calls
from attribkit.bench.timing import interleaved_times, median, peak_memory_mb
from attribkit.errors import UnknownMethodError
from attribkit.registry import MethodSpec, MetricSpec

#: the re-explaining metrics of the Quantus-named suite draw fewer samples in the bench
#: (Quantus's 200 noise draws per image are 200 explanations each)
SUITE_OPTIONS: dict[str, dict[str, Any]] = {
    name: {"nr_samples": 10} for name in ("local_lipschitz_estimate", "max_sensitivity", "avg_sensitivity",
                                          "relative_input_stability", "relative_output_stability")
}
PROFILES: dict[str, dict[str, Any]] = {
    # images scored, images for sanity checks, timing repeats, timing batch, how many
    # VARIANTS beside each method's default (None: all)
    "quick": {"n_images": 64, "sanity_images": 16, "repeats": 3, "speed_batch": 16,
              "metric_options": {**SUITE_OPTIONS, "deletion_auc": {"steps": 16}, "insertion_auc": {"steps": 16}},
              "variants": 1},
    "full": {"n_images": 500, "sanity_images": 64, "repeats": 10, "speed_batch": 64,
             "metric_options": {**SUITE_OPTIONS}, "variants": None},
}
SLOW_FAMILIES = ("perturbation",)
BACKWARD_FAMILIES = ("gradient", "lrp")  # floor: one forward + backward
#: methods scored once per value of one option: the registered default under the
#: method's name, each other value as ``name.value`` (``lrp.epsilon_gamma_box``), in
#: this order (the quick profile takes the first one)
VARIANTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "lrp": ("composite", ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1",
                          "epsilon_plus")),
}


def variants(spec: MethodSpec, limit: int | None = None) -> list[MethodSpec]:
    """``spec``, then one spec per other value of its :data:`VARIANTS` option (at most
    ``limit``), named ``name.value`` with that value as its default (explain takes the
    spec itself)."""
    if spec.name not in VARIANTS:
        return [spec]
    option, values = VARIANTS[spec.name]
    others = [dataclasses.replace(spec, name=f"{spec.name}.{value}", aliases=(),
                                  options={**spec.options, option: value})
              for value in values if value != spec.options[option]]
    return [spec, *others[:limit]]


def bench_method(name: str) -> MethodSpec:
    """A registered method by name or alias, or a :func:`variants` name."""
    try:
        return get_method(name)
    except UnknownMethodError:
        base = name.rpartition(".")[0]
        if base in VARIANTS:
            for spec in variants(get_method(base)):
                if spec.name == name:
                    return spec
        raise


@dataclasses.dataclass
class BenchConfig:
    """What to benchmark; see ``attribkit bench --help``."""

    out: Path
    profile: str = "quick"
    model: str = "synthetic"
    weights: str | None = None
    data: str | None = None
    methods: Sequence[str] | None = None
    metrics: Sequence[str] | None = None
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    n_images: int | None = None
    batch_size: int = 64
    seed: int = 0
    method_options: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def options_for(self, spec: MethodSpec) -> dict[str, Any]:
        """The options given for a method (under its name or an alias)."""
        return {k: v for label in spec.labels for k, v in self.method_options.get(label, {}).items()}

    def settings(self) -> dict[str, Any]:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        s = dict(PROFILES[self.profile])
        if self.n_images is not None:
            s["n_images"] = self.n_images
        return s

    def run_key(self) -> str:
        """Results of runs with the same key are interchangeable (resume)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("out", "methods", "metrics")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclasses.dataclass
class Subject:
    """The model and data a run is about."""

    name: str
    model: torch.nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None
    class_names: Sequence[str] | None = None


def load_subject(config: BenchConfig, n_images: int, log: Callable[[str], None] = print) -> Subject:
    """The reference model (``synthetic``: the CNN; ``synthetic-vit``: the ViT of
    :mod:`attribkit.bench.vit_reference`) on its synthetic test set (``--data digits``:
    the CNN trained on real handwritten digits, :mod:`attribkit.bench.digits`), or a
    torchvision / user model."""
    device = torch.device(config.device)
    if config.model == "synthetic-vit":
        from attribkit.bench.vit_reference import synthetic_vit_data

        model, inputs, targets, masks, names = synthetic_vit_data(n_images, config.seed, log)
    elif config.model == "synthetic" and config.data == "digits":
        from attribkit.bench.digits import digits_subject

        model, inputs, targets, masks, names = digits_subject(n_images, config.seed, log)
    elif config.model == "synthetic":
        from attribkit.bench.reference import TrainConfig, reference_model
        from attribkit.bench.synthetic import make_dataset

        train = TrainConfig(seed=config.seed)
        model, record = reference_model(train, log=log)
        log(f"reference model: test accuracy {record['test_accuracy']:.3f} ({record['path']})")
        data = make_dataset(n_images, size=train.size, classes=train.classes, seed=train.seed + 20_000)
        inputs = torch.from_numpy(data.images)
        targets = torch.from_numpy(data.labels)
        masks = torch.from_numpy(data.masks)
        names = data.class_names
    else:
        from attribkit.models import load_model

        model = load_model(config.model, config.weights)
        if config.data:
            from attribkit.images import load_image, to_input

            files = sorted(p for p in Path(config.data).rglob("*")
                           if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:n_images]
            if not files:
                raise FileNotFoundError(f"no .png/.jpg images under {config.data}")
            inputs = torch.cat([to_input(load_image(p)) for p in files])
        else:
            log("no --data: random images, so only speed is meaningful")
            gen = torch.Generator().manual_seed(config.seed)
            inputs = torch.randn(n_images, 3, 224, 224, generator=gen)
        with torch.no_grad():
            targets = torch.cat([model(inputs[i:i + 32]).argmax(1) for i in range(0, len(inputs), 32)])
        masks, names = None, None
    model = model.eval().to(device)
    inputs = inputs.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return Subject(config.model, model, inputs, targets.to(device), masks, names)


def choose_methods(config: BenchConfig) -> list[MethodSpec]:
    """``--methods`` or the profile's: quick = attribkit's own built-ins; full = every
    registered method except the perturbation family (ask for those by name); each
    with its :func:`variants` (the LRP composites: all in full, one in quick)."""
    if config.methods:
        return [bench_method(m) for m in config.methods]
    chosen = [s for s in methods() if s.family not in SLOW_FAMILIES]
    if config.profile == "quick":
        chosen = [s for s in chosen if (s.plugin or "").startswith("attribkit.")]
    limit = config.settings()["variants"]
    return [v for s in chosen for v in variants(s, limit)]


def choose_metrics(config: BenchConfig, subject: Subject) -> list[MetricSpec]:
    """``--metrics`` or the profile's (quick: attribkit's own, less the Quantus-named suite
    (:data:`attribkit.evaluation.plugin.QUICK_METRICS`), or with ``--data digits`` all
    of attribkit's; full: every registered metric), keeping those whose needs the subject meets."""
    from attribkit.evaluation.plugin import QUICK_METRICS

    if config.metrics:
        chosen = [get_metric(m) for m in config.metrics]
    else:
        every = config.profile != "quick" or config.data == "digits"  # digits: the whole suite
        chosen = [m for m in metrics() if m.name in QUICK_METRICS
                  or (every and (config.profile != "quick" or (m.plugin or "").startswith("attribkit.")))]
    return [m for m in chosen if "ground_truth" not in m.needs or subject.masks is not None]


class ResultsFileWarning(UserWarning):
    """A line of ``results.jsonl`` is not a result record (torn or damaged) and was skipped."""


class ResultStore:
    """Append-only JSONL of result records, keyed by (run, method, metric).

    Writing: each record is one whole line written with a single ``os.write``
    on a descriptor opened with ``O_APPEND``, then ``fsync``-ed. A crash or a
    kill of the process cannot tear a row: it comes before that one system
    call or after it (a buffered file object makes no such promise; it may
    write a long line in pieces). The fsync (0.4 to 5 ms per record measured on
    ext4, against the seconds even a tiny record takes) keeps the rows through
    a power cut too.
    A temporary file renamed over ``results.jsonl`` would be as safe but
    rewrites the whole file for every record.

    Reading (resume): a last line without its newline that does not parse was
    torn (a full disk, a power cut, an older writer); it is dropped with a
    :class:`ResultsFileWarning` and cut from the file before the next append,
    so its result is computed again. A last line that parses but lacks its
    newline gets one before the next append, so rows are never glued. Any
    other line that is not a result record (the file was damaged there) is
    skipped with a warning and left in place.
    """

    def __init__(self, path: Path, run: str) -> None:
        self.path = Path(path)
        self.run = run
        self.records: dict[tuple[str, str], dict] = {}
        self._torn_at: int | None = None  # byte offset of a torn last line, cut before the next append
        self._unterminated = False  # the last line lacks its newline
        if self.path.exists():
            self._load(self.path.read_bytes())

    def _load(self, data: bytes) -> None:
        start = 0
        for number, line in enumerate(data.split(b"\n"), start=1):
            end = start + len(line)
            if line.strip():
                record = _parse_record(line)
                if record is None and end == len(data):
                    self._torn_at = start
                    warnings.warn(f"{self.path}: line {number} is torn ({_excerpt(line)}), cut off while it "
                                  "was written; dropped, its result is computed again",
                                  ResultsFileWarning, stacklevel=3)
                elif record is None:
                    warnings.warn(f"{self.path}: line {number} is not a result record ({_excerpt(line)}), "
                                  "the file is damaged there; skipped", ResultsFileWarning, stacklevel=3)
                elif record["run"] == self.run:
                    self.records[(record["method"], record["metric"])] = record
            start = end + 1
        self._unterminated = self._torn_at is None and not data.endswith(b"\n") and bool(data)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.records

    def add(self, record: dict) -> None:
        """Append ``record`` (tagged with this run) as one line and keep it in :attr:`records`."""
        record = {"run": self.run, **record}
        data = (b"\n" if self._unterminated else b"") + (json.dumps(record) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._torn_at is not None:
            os.truncate(self.path, self._torn_at)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"{self.path}: wrote {written} of {len(data)} bytes of a result row (disk full?)")
            os.fsync(fd)
        finally:
            os.close(fd)
        self._torn_at, self._unterminated = None, False
        self.records[(record["method"], record["metric"])] = record


def _parse_record(line: bytes) -> dict | None:
    """The result record on ``line``, or None when it is not one."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None
    if isinstance(record, dict) and all(isinstance(record.get(k), str) for k in ("run", "method", "metric")):
        return record
    return None


def _excerpt(line: bytes, size: int = 60) -> str:
    text = line.decode(errors="replace")
    return repr(text) if len(text) <= size else f"{text[:size]!r}... {len(line)} bytes"


MAX_WARNINGS = 10  # distinct warnings kept per record


@contextlib.contextmanager
def _recording_warnings() -> Iterator[list[str]]:
    """Record the warnings raised in the body instead of showing them; the list it
    yields is filled on exit with up to :data:`MAX_WARNINGS` distinct short texts
    ``"Category: message (package/module.py:line)"``. The active filters still apply
    (``-W error`` makes them errors, ``ignore`` drops them)."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        try:
            yield found
        finally:
            found.extend(_distinct(
                f"{w.category.__name__}: {_shorten(str(w.message))} ({_where(w.filename, w.lineno)})"
                for w in caught))


def _distinct(texts: Iterable[str]) -> list[str]:
    """``texts`` without repeats, at most :data:`MAX_WARNINGS` of them."""
    return list(dict.fromkeys(texts))[:MAX_WARNINGS]


def _shorten(text: str, size: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 3] + "..."


def _where(filename: str, lineno: int) -> str:
    """``filename`` relative to the ``sys.path`` entry holding it (``captum/attr/x.py:12``)."""
    path = Path(filename)
    roots = [Path(p) for p in sys.path if p and path.is_relative_to(p)]
    if roots:
        path = path.relative_to(max(roots, key=lambda r: len(r.parts)))
    return f"{path.as_posix()}:{lineno}"


def _autocast(config: BenchConfig):
    if not config.amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(config.device).type, dtype=torch.bfloat16)


def _summary(scores: torch.Tensor) -> dict[str, float]:
    scores = scores.detach().double().cpu()
    n = len(scores)
    std = float(scores.std()) if n > 1 else 0.0
    return {"mean": float(scores.mean()), "sem": std / math.sqrt(n) if n > 1 else 0.0, "n": n}


def _floor_call(spec: MethodSpec, model: torch.nn.Module, x: torch.Tensor,
                targets: torch.Tensor) -> tuple[str, Callable[[], object]]:
    if spec.family in BACKWARD_FAMILIES or (spec.family == "attention" and "autograd" in spec.needs):
        def forward_backward():
            xx = x.detach().requires_grad_()
            return torch.autograd.grad(model(xx).gather(1, targets[:, None]).sum(), xx)

        return "forward+backward", forward_backward

    def forward():
        with torch.no_grad():
            return model(x)

    return "forward", forward


FLOOR_BATCHES = (16, 64, 256, 1024)


def count_forward_rows(model: torch.nn.Module, call: Callable[[], object]) -> int:
    """How many input rows ``model`` sees during ``call()`` (a thread-keyed forward pre-hook)."""
    from attribkit.torch.capture import forward_hook

    rows = 0

    def count(_module, args):
        nonlocal rows
        rows += len(args[0])

    with forward_hook(model, count, pre=True):
        call()
    return rows


def best_forward_batch(model: torch.nn.Module, x: torch.Tensor, rows: int,
                       device: torch.device) -> tuple[int, Callable[[], object]]:
    """Of the batch sizes in :data:`FLOOR_BATCHES` (up to ``rows``), the one with the
    lowest forward time per row, and a no-grad forward of that many rows."""
    candidates = [b for b in FLOOR_BATCHES if b <= rows] or [max(1, rows)]
    best, best_per_row, best_call = candidates[0], float("inf"), None
    for b in candidates:
        batch = x.repeat(-(-b // len(x)), *([1] * (x.ndim - 1)))[:b]

        def forward(batch=batch):
            with torch.no_grad():
                return model(batch)

        per_row = min(interleaved_times({"f": forward}, repeats=2, device=device)["f"]) / b
        if per_row < best_per_row:
            best, best_per_row, best_call = b, per_row, forward
    return best, best_call


#: a ratio to the floor below this, for a method that does the floor's work, is noise
NOISE_FLOOR = 0.9


def _ratio(times: dict[str, list[float]], scale: float) -> float:
    return median(times["attribkit"]) / (median(times["floor"]) * scale)


def _quartiles(values: list[float]) -> tuple[float, float]:
    """First and third quartiles (``statistics.quantiles``, inclusive; the value itself
    when there is one)."""
    import statistics

    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def measure_speed(spec: MethodSpec, subject: Subject, config: BenchConfig, settings: dict,
                  layer: Any) -> dict:
    """Median time per batch against the method's floor and the peers, interleaved.

    The floor is one forward+backward for gradient and LRP methods (and the attention
    methods that take gradients, generic_attention) and one forward for the others,
    except perturbation methods: their floor is the N forwards they make (counted
    with a hook), run at the best batch size; a ratio of 1 means
    the method costs no more than its model evaluations."""
    device = torch.device(config.device)
    x = subject.inputs[:settings["speed_batch"]]
    t = subject.targets[:len(x)]
    kwargs = {"layer": layer} if "layer" in spec.needs else {}
    kwargs.update(config.options_for(spec))

    def ours():
        return explain(subject.model, x, t, method=spec, batch_size=config.batch_size, **kwargs)

    scale, extra = 1.0, {}
    if spec.family == "perturbation":
        rows = count_forward_rows(subject.model, ours)
        best, floor = best_forward_batch(subject.model, x, rows, device)
        scale, floor_name = rows / best, f"{rows} forwards"
        extra = {"forwards": rows, "floor_batch": best}
    else:
        floor_name, floor = _floor_call(spec, subject.model, x, t)
    calls = {"floor": floor, "attribkit": ours}
    layer_module = layer if isinstance(layer, torch.nn.Module) else None
    peer_errors = {}
    with _autocast(config):
        for peer, call in peer_calls(spec.name).items():
            if layer_module is None and spec.family not in BACKWARD_FAMILIES:
                continue
            bound = functools.partial(call, subject.model, x, t, layer_module)
            try:
                bound()  # a peer that cannot run this setting (e.g. bf16) is reported, not timed
            except Exception as exc:  # noqa: BLE001
                peer_errors[peer] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            calls[peer] = bound
        times = interleaved_times(calls, repeats=settings["repeats"], warmup=1, device=device)
        # A method that runs the floor's work cannot beat it: a ratio below the floor is the
        # machine's noise; measure again with more repeats (all rounds kept), twice at most.
        bounded = spec.family != "perturbation" and count_forward_rows(subject.model, ours) >= len(x)
        remeasured = 0
        while bounded and _ratio(times, scale) < NOISE_FLOOR and remeasured < 2:
            remeasured += 1
            more = interleaved_times(calls, repeats=2 * settings["repeats"], warmup=0, device=device)
            times = {k: times[k] + more[k] for k in times}
        memory = peak_memory_mb(calls["attribkit"], device)
    floor_s = median(times["floor"]) * scale
    ours_s = median(times["attribkit"])
    q1, q3 = _quartiles(times["attribkit"])
    return {
        "median_ms": ours_s * 1e3, "floor_ms": floor_s * 1e3, "floor": floor_name,
        "ratio": ours_s / floor_s, "images_per_s": len(x) / ours_s, "batch": len(x),
        "q1_ms": q1 * 1e3, "q3_ms": q3 * 1e3, "repeats": len(times["attribkit"]),
        "noisy": bool(bounded and ours_s / floor_s < NOISE_FLOOR), "remeasured": remeasured,
        "peak_memory_mb": memory, "device": str(device), **extra,
        "peers": {**{name: {"median_ms": median(v) * 1e3, "ratio": median(v) / floor_s}
                     for name, v in times.items() if name not in ("floor", "attribkit")},
                  **peer_errors},
    }


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

    settings = config.settings()
    for name, options in config.method_options.items():
        get_method(name).bind_options(options)  # unknown methods / options fail before any work
    subject = load_subject(config, settings["n_images"], log)
    chosen = runnable(choose_methods(config), subject, log, asked=bool(config.methods))
    scored = choose_metrics(config, subject)
    out = Path(config.out)
    store = ResultStore(out / "results.jsonl", config.run_key())
    layer = _default_layer(subject)
    tasks = {(m.name, k) for m in chosen for k in ["speed", *[s.name for s in scored]]}
    bar = _progress(len(tasks), progress)

    def records_in(store: ResultStore) -> list[dict]:
        return [r for (m, _k), r in store.records.items() if m in {s.name for s in chosen}]

    def write(records: list[dict], note: str | None = None) -> Path:
        write_summary(records, out)
        return write_report(records, out, config=config, subject=subject,
                            metric_specs={s.name: s for s in scored}, note=note)["report"]

    try:
        for spec in chosen:
            _bench_method(spec, subject, config, settings, layer, scored, store, bar)
    except KeyboardInterrupt as exc:
        bar.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResultsFileWarning)  # shown when the run started
            done = ResultStore(store.path, store.run)  # what reached the file
        n = len(tasks & done.records.keys())
        path = write(records_in(done), f"Partial: interrupted after {n} of {len(tasks)} results; "
                                       "run the same command again to resume.")
        raise KeyboardInterrupt(f"interrupted: partial report ({n} of {len(tasks)} results) in {path}; "
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
    with _recording_warnings() as shared:
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
            with _recording_warnings() as own:
                record = _score(metric, spec, subject, relevance, explain_fn, config, settings)
            store.add({**record, "warnings": _distinct([*shared, *own])})
            bar.update(1)
    if "speed" in todo:
        with _recording_warnings() as own:
            record = measure_speed(spec, subject, config, settings, layer)
        store.add({"method": spec.name, "metric": "speed", **record, "warnings": own})
        bar.update(1)


def runnable(specs: list[MethodSpec], subject: Subject, log: Callable[[str], None] = print,
             asked: bool = False) -> list[MethodSpec]:
    """``specs`` without the methods whose needs the model cannot meet: those that need
    attention when the model runs none that :mod:`attribkit.torch.attention` can read
    (the attention family on a CNN). They are left out quietly, with one line in the
    log only when they were asked for by name (``asked``)."""
    wanting = [s.name for s in specs if "attention" in s.needs]
    if not wanting:
        return specs
    from attribkit.torch.attention import has_attention

    if has_attention(subject.model, subject.inputs[:1]):
        return specs
    if asked:
        log(f"skipped (the model has no attention to read): {', '.join(wanting)}")
    return [s for s in specs if "attention" not in s.needs]


def _default_layer(subject: Subject) -> Any:
    from attribkit.torch.layers import resolve_layer

    try:
        return resolve_layer(subject.model, None, subject.inputs[:1])[0]
    except Exception:  # noqa: BLE001 - models without a spatial layer run no layer methods
        return None


def _progress(total: int, enabled: bool):
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
    size = tuple(subject.inputs.shape[-2:])
    kwargs = {"layer": layer} if "layer" in spec.needs else {}
    options = config.options_for(spec)

    def explain_fn(model: Any, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if "layer" in spec.needs and model is not subject.model:
            from attribkit.torch.layers import layer_name

            kw = {"layer": layer_name(subject.model, layer), **options}  # the same layer in a copy
        else:
            kw = {**kwargs, **options}
        with _autocast(config):
            values = explain(model, inputs, targets, method=spec, batch_size=config.batch_size, **kw).values
        return pixel_relevance(values, size)

    return explain_fn(subject.model, subject.inputs, subject.targets), explain_fn


def _score(metric: MetricSpec, spec: MethodSpec, subject: Subject, relevance: torch.Tensor,
           explain_fn: Callable, config: BenchConfig, settings: dict) -> dict:
    reexplains = metric.kind == "sanity" or "method" in metric.needs  # robustness, focus, ...
    n = settings["sanity_images"] if reexplains else len(subject.inputs)
    data = MetricInput(
        predict=subject.model, inputs=subject.inputs[:n], relevance=relevance[:n],
        targets=subject.targets[:n], masks=None if subject.masks is None else subject.masks[:n],
        model=subject.model, explain=explain_fn, batch_size=256)
    options = settings["metric_options"].get(metric.name, {})
    record = {"method": spec.name, "metric": metric.name, "kind": metric.kind,
              "higher_is_better": metric.higher_is_better}
    start = time.perf_counter()
    try:
        with _autocast(config):
            result = metric.load()(data, **metric.bind_options(options))
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        return {**record, "error": f"{type(exc).__name__}: {exc}"}
    return {**record, **_summary(result.scores), "curves": result.curves,
            "seconds": time.perf_counter() - start}
