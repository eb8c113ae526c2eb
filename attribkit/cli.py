"""Command line: ``attribkit methods|metrics|plugins|explain|bench [feedback]|demo``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attribkit.errors import AttribkitError


def format_table(rows: list[dict], columns: Sequence[str]) -> str:
    """Plain fixed-width table of ``rows`` (dicts) restricted to ``columns``."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def method_rows() -> list[dict]:
    from attribkit.api import methods

    return [{
        "name": s.name, "aliases": ",".join(s.aliases), "family": s.family,
        "needs": ",".join(s.needs), "output": s.output, "sign": s.sign,
        "plugin": s.plugin, "options": dict(s.options), "reference": s.reference,
    } for s in methods()]


def cmd_methods(args: argparse.Namespace) -> int:
    rows = method_rows()
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
    else:
        print(format_table(rows, ["name", "aliases", "family", "needs", "output", "sign", "plugin"]))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from attribkit.api import plugins

    rows = [dataclasses.asdict(p) for p in plugins()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        row["methods"] = len(row["methods"])
    print(format_table(rows, ["name", "distribution", "version", "status", "methods", "error"]))
    return 0


def load_model(spec: str, weights: str | None):
    """``torchvision:NAME`` or ``package.module:factory``; weights ``DEFAULT``/a name/a state-dict file."""
    import importlib

    import torch

    source, _, name = spec.partition(":")
    if not name:
        raise AttribkitError(f"--model must look like torchvision:resnet18 or package.module:factory, got {spec!r}")
    weights_file = weights if weights and Path(weights).is_file() else None
    if source == "torchvision":
        import torchvision

        model = torchvision.models.get_model(name, weights=None if weights_file else weights)
    else:
        model = getattr(importlib.import_module(source), name)()
    if weights_file:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    elif weights is None:
        print(f"note: {spec} has random weights (pass --weights DEFAULT or a state-dict file)",
              file=sys.stderr)
    return model.eval()


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from attribkit.api import explain
    from attribkit.images import IMAGENET_MEAN, IMAGENET_STD, load_image, to_display, to_input
    from attribkit.viz import render, save, show

    model = load_model(args.model, args.weights)
    batch = torch.cat([to_input(load_image(p), args.size) for p in args.images])
    result = explain(model, batch, target=args.target, method=args.method,
                     layer=args.layer, batch_size=args.batch_size)
    shown = to_display(batch, IMAGENET_MEAN, IMAGENET_STD)  # to_input's normalisation
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    values = result.numpy()
    for i, path in enumerate(args.images):
        stem = f"{Path(path).stem}_{result.method}"
        save(render(values[i], shown[i], mode=args.mode, sign=args.sign), out / f"{stem}.png")
        np.save(out / f"{stem}.npy", values[i])
        target = "" if result.target is None else f" target={int(result.target[i])}"
        print(f"{path}: {out / stem}.png{target}")
    modes = list(dict.fromkeys(["original_image", "heat_map", args.mode]))
    grid = save(show(result, shown, mode=modes, sign=args.sign), out / f"grid_{result.method}.png")
    print(f"grid: {grid}")
    return 0


def parse_method_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["rise.n_masks=500", "occlusion.window=[8,8]"]`` -> ``{"rise": {"n_masks": 500}, ...}``;
    values are read as JSON, else kept as strings. The method is everything before the
    last dot of the key (``example.rise.n_masks`` works too)."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, name = key.rpartition(".")
        if not sep or not dot or not method or not name:
            raise AttribkitError(f"--method-option takes METHOD.OPTION=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options.setdefault(method, {})[name] = tuple(value) if isinstance(value, list) else value
    return options


def cmd_bench(args: argparse.Namespace) -> int:
    if args.experiment == "feedback":
        return cmd_bench_feedback(args)
    from attribkit.bench.runner import BenchConfig, run_bench

    config = BenchConfig(out=Path(args.out), profile=args.profile, model=args.model, weights=args.weights,
                         data=args.data, methods=args.methods, metrics=args.metrics, device=args.device,
                         amp=args.amp, channels_last=args.channels_last, n_images=args.n_images,
                         batch_size=args.batch_size, seed=args.seed,
                         method_options=parse_method_options(args.method_option or []))
    run_bench(config, progress=not args.no_progress)
    print((Path(args.out) / "report.md").read_text())
    print(f"report, results.json, results.jsonl and plots in {args.out}")
    return 0


def cmd_bench_feedback(args: argparse.Namespace) -> int:
    """``attribkit bench feedback``: plain vs attribution-guided training on the spurious-cue data."""
    from attribkit.bench.feedback import FeedbackConfig, run_feedback

    ignored = [flag for flag, value in (("--model", args.model != "synthetic"), ("--weights", args.weights),
                                        ("--data", args.data), ("--methods", args.methods),
                                        ("--metrics", args.metrics), ("--n-images", args.n_images),
                                        ("--method-option", args.method_option)) if value]
    if ignored:
        raise AttribkitError(f"bench feedback does not take {', '.join(ignored)}")
    config = FeedbackConfig(out=Path(args.out), profile=args.profile, seeds=args.seeds, seed=args.seed)
    results = run_feedback(config, log=None if args.no_progress else print)
    print(results["table"])
    print(f"table.md, results.json and figures in {args.out}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from attribkit.api import metrics

    rows = [{"name": s.name, "kind": s.kind, "better": "higher" if s.higher_is_better else "lower",
             "needs": ",".join(s.needs), "plugin": s.plugin, "options": dict(s.options),
             "reference": s.reference} for s in metrics()]
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
    else:
        print(format_table(rows, ["name", "kind", "better", "needs", "plugin"]))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from attribkit.demo import run_demo

    run_demo(Path(args.out), n_images=args.images, bench_images=args.bench_images)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attribkit", description="What a neural network looks at.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="list registered attribution methods")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("metrics", help="list registered faithfulness / localisation / sanity metrics")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("plugins", help="list loaded, failed and disabled plugins")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("explain", help="explain images and write heat maps")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", required=True, help="torchvision:NAME or package.module:factory")
    p.add_argument("--weights", help="DEFAULT, a torchvision weights name, or a state-dict file")
    p.add_argument("--method", default="saliency")
    p.add_argument("--target", type=int, help="class index (default: each image's top class)")
    p.add_argument("--layer", help="layer for layer methods (default: auto)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--mode", default="blended_heat_map",
                   choices=("heat_map", "blended_heat_map", "masked_image", "alpha_scaling"),
                   help="how each PNG draws the map (default: blended_heat_map)")
    p.add_argument("--sign", default="absolute_value",
                   choices=("all", "positive", "negative", "absolute_value"))
    p.add_argument("--out", default="attribkit-out",
                   help="folder for IMAGE_METHOD.png/.npy per image and grid_METHOD.png")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("bench", help="speed and faithfulness of every method, with ground truth; "
                       "`bench feedback`: attribution-guided training on the spurious-cue data")
    p.add_argument("experiment", nargs="?", choices=("methods", "feedback"), default="methods",
                   help="methods (default): speed + faithfulness of every method; feedback: train a CNN "
                        "plain / with RRR / with CAM losses and compare accuracy with the cue broken")
    p.add_argument("--profile", choices=("quick", "full"), default="quick")
    p.add_argument("--seeds", type=int, help="feedback: seeds per variant (default: the profile's, 5)")
    p.add_argument("--model", default="synthetic",
                   help="synthetic (the trained reference model), torchvision:NAME or package.module:factory")
    p.add_argument("--weights", help="for torchvision models: DEFAULT, a weights name or a state-dict file")
    p.add_argument("--data", help="folder of images for a non-synthetic model (no ground truth)")
    p.add_argument("--methods", nargs="+", help="default: the profile's methods")
    p.add_argument("--metrics", nargs="+", help="default: every registered metric that applies")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--n-images", type=int, help="images scored (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--method-option", action="append", metavar="METHOD.OPTION=VALUE",
                   help="an option for one method, e.g. rise.n_masks=500 (repeatable; JSON values)")
    p.add_argument("--seed", type=int, default=0, help="(feedback: the first of the seeds)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default="bench-out")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="the main job on the embedded default")
    p.add_argument("--out", default="demo-out")
    p.add_argument("--images", type=int, default=4, help="test images explained by every method")
    p.add_argument("--bench-images", type=int, default=32, help="images in the short benchmark")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AttribkitError as exc:
        print(f"attribkit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `attribkit methods | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
