"""``benchmarks/gpu.sh [--dry-run] [--out DIR] [--sections a,b]``: the headline
comparisons on one CUDA GPU (<= 8 minutes on an H100), written to ``DIR/gpu.json``
and ``DIR/gpu.md`` (default ``gpu-out/``); the Markdown is printed at the end.

``--dry-run`` runs the same code on the CPU at tiny sizes (a few seconds to a
minute). Without it, a machine without CUDA is refused with a one-line error.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import attribkit
from benchmarks.gpu import attention, config, dataset, kernels, lrp, pixel_flipping, report
from benchmarks.gpu.measure import Row, Stopwatch, reason_of, skipped

SECTIONS: dict[str, Callable[[config.Config], list[Row]]] = {
    "kernels": kernels.run,
    "attention": attention.run,
    "lrp": lrp.run,
    "pixel_flipping": pixel_flipping.run,
    "dataset": dataset.run,
}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="benchmarks/gpu.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (the same code path)")
    parser.add_argument("--out", type=Path, default=Path("gpu-out"), help="output folder (default gpu-out/)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which the remaining sections are skipped (default 420)")
    return parser.parse_args(argv)


def run_sections(cfg: config.Config, names: Sequence[str], budget_s: float) -> tuple[list[Row], dict[str, float]]:
    """Every section's rows (a section that raises gives one skipped row with the
    reason) and its seconds, printed as each ends."""
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    total = Stopwatch()
    for name in names:
        watch = Stopwatch()
        if total.elapsed > budget_s:
            section_rows = [skipped(name, "*", "attribkit", "attribkit", f"time budget of {budget_s:.0f} s spent")]
        else:
            try:
                section_rows = SECTIONS[name](cfg) or [skipped(name, "*", "attribkit", "attribkit", "no rows")]
            except Exception as exc:  # noqa: BLE001 - one broken section must not stop the others
                section_rows = [skipped(name, "*", "attribkit", "attribkit", reason_of(exc))]
        gc.collect()
        if cfg.device.type == "cuda":
            torch.cuda.empty_cache()
        seconds[name] = round(watch.elapsed, 2)
        rows += section_rows
        ran = sum(r.status == "ok" for r in section_rows)
        print(f"[gpu] {name}: {seconds[name]:.1f} s, {ran} of {len(section_rows)} rows ran "
              f"(total {total.elapsed:.1f} s)", file=sys.stderr, flush=True)
    return rows, seconds


def meta_of(cfg: config.Config, seconds: dict[str, float]) -> dict[str, Any]:
    """The run's header: device, versions, date, sizes and section times."""
    device = cfg.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "attribkit": attribkit.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "dry_run": cfg.dry_run, "config": cfg.describe(), "sections_s": seconds,
            "elapsed_s": round(sum(seconds.values()), 2)}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 2 when CUDA is missing for a real run."""
    args = parse(argv)
    names = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        print(f"gpu.sh: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    if args.dry_run:
        cfg = config.dry(torch.device("cpu"))
    elif not torch.cuda.is_available():
        print("gpu.sh: no CUDA GPU found; the full run needs one (use --dry-run for tiny sizes on the CPU)",
              file=sys.stderr)
        return 2
    else:
        torch.backends.cudnn.benchmark = True
        cfg = config.real(torch.device("cuda"))
    rows, seconds = run_sections(cfg, names, args.budget)
    meta = meta_of(cfg, seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(args.out / "gpu.json", meta, rows)
    text = report.markdown(meta, rows)
    (args.out / "gpu.md").write_text(text)
    print(text)
    print(f"[gpu] wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'}", file=sys.stderr)
    return 0
