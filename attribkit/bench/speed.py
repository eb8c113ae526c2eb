"""The speed column: a method's time per batch against its floor and its peers, interleaved."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from attribkit.api import explain
from attribkit.bench.peers import peer_calls
from attribkit.bench.recording import Captured
from attribkit.bench.timing import interleaved_times, median, peak_memory_mb
from attribkit.registry import MethodSpec

if TYPE_CHECKING:
    from attribkit.bench.config import BenchConfig
    from attribkit.bench.subject import Subject

BACKWARD_FAMILIES = ("gradient", "lrp")  # floor: one forward + backward


def _floor_call(spec: MethodSpec, model: torch.nn.Module, x: torch.Tensor,
                targets: Any) -> tuple[str, Callable[[], object]]:
    if spec.family in BACKWARD_FAMILIES or (spec.family == "attention" and "autograd" in spec.needs):
        def forward_backward():
            xx = x.detach().requires_grad_()
            out = model(xx)
            score = out.gather(1, targets[:, None]) if isinstance(targets, torch.Tensor) else targets.score(out)
            return torch.autograd.grad(score.sum(), xx)

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
    the method costs no more than its model evaluations. What a peer prints or warns
    is kept in its entry (``peers[name]["printed"]``, ``["warnings"]``), not shown;
    ``config.peers=False`` leaves the peers out."""
    device = torch.device(config.device)
    x = subject.inputs[:settings["speed_batch"]]
    t = subject.targets_of(len(x))
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
    peer_errors, noise = {}, {}
    with config.autocast():
        # the peers take class indices: none for a target object
        for peer, call in (peer_calls(spec.name) if config.peers and isinstance(t, torch.Tensor) else {}).items():
            if layer_module is None and spec.family not in BACKWARD_FAMILIES:
                continue
            noise[peer] = Captured()  # what the peer prints or warns is kept under its name
            bound = noise[peer].wrap(functools.partial(call, subject.model, x, t, layer_module))
            try:
                bound()  # a peer that cannot run this setting (e.g. bf16) is reported, not timed
            except Exception as exc:  # noqa: BLE001
                peer_errors[peer] = {"error": f"{type(exc).__name__}: {exc}", **noise[peer].record()}
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
        "peers": {**{name: {"median_ms": median(v) * 1e3, "ratio": median(v) / floor_s, **noise[name].record()}
                     for name, v in times.items() if name not in ("floor", "attribkit")},
                  **peer_errors},
    }

