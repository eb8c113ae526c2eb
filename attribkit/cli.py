"""Command line: ``attribkit methods|metrics|plugins|explain|explain-text|explain-dataset|verify|bench [tasks|feedback]|report|demo``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attribkit import __version__
from attribkit.commands.common import (
    factories_from_cwd,
    parse_method_options,
    print_listing,
    read_class_names,
)
from attribkit.commands.dataset import cmd_explain_dataset
from attribkit.commands.explain import cmd_explain
from attribkit.commands.explain_text import add_parser as add_explain_text
from attribkit.commands.verify import cmd_verify
from attribkit.errors import AttribkitError
from attribkit.tables import (
    METHOD_COLUMNS,
    METHOD_PRIORITY,
    METRIC_PRIORITY,
    format_fields,
    format_table,
    method_row,
    method_rows,
    metric_columns,
    metric_rows,
)

MODEL_HELP = ("torchvision:NAME, timm:NAME or PKG.MOD:FACTORY; PKG.MOD:FACTORY imports PKG.MOD (the current "
              "folder first, as python -m does) and calls FACTORY(): that runs the module's code, so "
              "name only code you trust")
WEIGHTS_HELP = ("DEFAULT (the pretrained weights, downloaded once into torch's or huggingface's cache), a "
                "torchvision weights name such as IMAGENET1K_V1, or a state-dict file (read with "
                "torch.load(weights_only=True), so it cannot run code); default: random weights")


def cmd_methods(args: argparse.Namespace) -> int:
    if args.name:
        return show_method(args.name, as_json=args.json)
    rows = method_rows()
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
    else:
        print_listing(rows, METHOD_COLUMNS, METHOD_PRIORITY, wide=args.wide,
                      hint="; attribkit methods NAME shows one method in full")
    return 0


def show_method(name: str, as_json: bool) -> int:
    """``attribkit methods NAME``: every field of one method (name or alias)."""
    from attribkit.api import get_method

    row = method_row(get_method(name))
    if as_json:
        print(json.dumps(row, indent=2, default=repr))
        return 0
    fields = ("name", "aliases", "family", "needs", "output", "inputs", "sign", "options",
              *(("text_options",) if row["inputs"].endswith("text") else ()), "reference", "description", "plugin")
    print(format_fields({key: row[key] for key in fields}))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from attribkit.api import plugins

    rows = [dataclasses.asdict(p) for p in plugins()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        row["methods"] = len(row["methods"])
        row["backends"] = ", ".join(row["backends"])  # frameworks it serves (docs/frameworks.md)
    print(format_table(rows, ["name", "distribution", "version", "status", "methods", "backends", "error"]))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.experiment == "feedback":
        return cmd_bench_feedback(args)
    if args.experiment == "tasks":
        return cmd_bench_tasks(args)
    from attribkit.bench.runner import BenchConfig, run_bench

    if args.model:
        factories_from_cwd(args.model)
    config = BenchConfig(out=Path(args.out), profile=args.profile, task=args.task, model=args.model,
                         weights=args.weights, data=args.data, methods=args.methods, metrics=args.metrics,
                         device=args.device,
                         amp=args.amp, channels_last=args.channels_last, n_images=args.n_images,
                         batch_size=args.batch_size, seed=args.seed,
                         method_options=parse_method_options(args.method_option or []))
    try:
        run_bench(config, progress=not args.no_progress)
    except KeyboardInterrupt:
        write_bench_html(Path(args.out))  # the partial report, beside the partial report.md
        raise
    print((Path(args.out) / "report.md").read_text())
    html = write_bench_html(Path(args.out))
    print(f"report.md, {html.name if html else 'no report.html'}, results.json, results.jsonl and plots "
          f"in {args.out}")
    return 0


def cmd_bench_tasks(args: argparse.Namespace) -> int:
    """``attribkit bench tasks``: the benchmark tasks, one line each."""
    from attribkit.bench.tasks import task_rows

    rows = task_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, ("name", "evidence", "also", "description")))
    return 0


def write_bench_html(folder: Path) -> Path | None:
    """``report.html`` of the bench run in ``folder`` (``None`` when there are no results yet)."""
    from attribkit.report.bench import bench_report, is_bench_folder

    return bench_report(folder) if is_bench_folder(folder) else None


def cmd_report(args: argparse.Namespace) -> int:
    """``attribkit report RUN``: the self-contained HTML report of a store or a bench folder."""
    from attribkit.report import write_report
    from attribkit.report.bench import is_bench_folder

    options: dict[str, Any] = {"title": args.title}
    if is_bench_folder(args.run):
        store_only = [flag for flag, value in (("--images", args.images), ("--size", args.size),
                                                ("--limit", args.limit), ("--model-classes", args.model_classes))
                      if value is not None]
        if store_only:
            raise AttribkitError(f"{args.run} is a bench run folder: {', '.join(store_only)} apply to a "
                                 "dataset store only")
    else:
        options.update(images=args.images, limit=args.limit, model_classes=read_class_names(args.model_classes))
        if args.size is not None:
            options["size"] = args.size
    path = write_report(args.run, args.out, **options)
    size = path.stat().st_size
    print(f"{path} ({size / 1e6:.1f} MB)" if size >= 1e6 else f"{path} ({size / 1e3:.0f} kB)")
    return 0


def cmd_bench_feedback(args: argparse.Namespace) -> int:
    """``attribkit bench feedback``: plain vs attribution-guided training on the spurious-cue data."""
    from attribkit.bench.feedback import FeedbackConfig, run_feedback

    ignored = [flag for flag, value in (("--task", args.task), ("--model", args.model),
                                        ("--weights", args.weights), ("--data", args.data), ("--methods", args.methods),
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
    rows = metric_rows()
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
    else:
        print_listing(rows, metric_columns(rows), METRIC_PRIORITY, wide=args.wide, hint="; --json has every field")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from attribkit.demo import run_demo

    run_demo(Path(args.out), n_images=args.images, bench_images=args.bench_images, compare_methods=args.compare)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``attribkit`` argument parser: one sub-command per ``cmd_*`` function."""
    parser = argparse.ArgumentParser(prog="attribkit", description="What a neural network looks at.")
    parser.add_argument("--version", action="version", version=f"attribkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("methods", help="list registered attribution methods, or show one in full")
    p.add_argument("name", nargs="?", help="a method name or alias: show all its fields and options")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument("--wide", action="store_true", help="every column in full, however wide (default: the table "
                                                       "fits the terminal)")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("metrics", help="list registered faithfulness / localisation / sanity metrics, with "
                       "what each costs in model forwards per image")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.add_argument("--wide", action="store_true", help="every column in full, however wide (default: the table "
                                                       "fits the terminal)")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("plugins", help="list loaded, failed and disabled plugins")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("explain", help="explain a few images with one method: a heat map PNG and the raw values "
                       "per image, and a grid of them all, written into a folder")
    p.add_argument("images", nargs="+", help="image files, or folders of images (flat, or one sub-folder per "
                                             "class)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--method", default="saliency",
                   help="an attribution method (default: saliency; `attribkit methods` lists them)")
    p.add_argument("--target", type=int, help="class index (default: each image's top class)")
    p.add_argument("--layer", help="layer for layer methods (default: auto)")
    p.add_argument("--size", type=int, default=224,
                   help="model input side (default 224): each image is resized (shorter side SIZE*256/224) "
                        "and centre-cropped to SIZExSIZE, as ImageNet models are evaluated")
    p.add_argument("--resize-only", action="store_true",
                   help="squash the whole image to SIZExSIZE instead of cropping its centre")
    p.add_argument("--batch-size", type=int, help="images per chunk, to bound memory (default: all at once)")
    p.add_argument("--mode", default="blended_heat_map",
                   choices=("heat_map", "blended_heat_map", "masked_image", "alpha_scaling"),
                   help="how each PNG draws the map (default: blended_heat_map)")
    p.add_argument("--sign", default="absolute_value",
                   choices=("all", "positive", "negative", "absolute_value"),
                   help="which values each PNG draws (default: absolute_value)")
    p.add_argument("--out", default="attribkit-out",
                   help="a new or empty folder for IMAGE_METHOD.png/.npy per image and grid_METHOD.png "
                        "(default: attribkit-out)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds files (files of the same name are replaced)")
    p.set_defaults(func=cmd_explain)
    add_explain_text(sub)

    p = sub.add_parser("explain-dataset", help="explain every image of a folder into a resumable store; "
                       "also under torchrun --nproc_per_node=N")
    p.add_argument("data", help="a folder of images, flat or with one sub-folder per class (torchvision "
                                "ImageFolder's layout: the labels are stored too)")
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--methods", nargs="+", required=True, help="attribution methods (`attribkit methods`)")
    p.add_argument("--metrics", nargs="+", help="metrics scored per image in the same pass (`attribkit metrics`)")
    p.add_argument("--target", help="a class index, or 'label' (the class folder); default: each image's top class")
    p.add_argument("--layer", help="layer for layer methods (default: auto)")
    p.add_argument("--size", type=int, default=224, help="model input side (default 224), as for explain")
    p.add_argument("--resize-only", action="store_true",
                   help="squash the whole image to SIZExSIZE instead of cropping its centre")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch and per chunk (default 64)")
    p.add_argument("--dtype", default="float32",
                   help="the stored maps' dtype: float32 (default) or float16 (half the bytes)")
    p.add_argument("--compressor", default="none",
                   help="the maps' lossless compressor: none (default), zstd, gzip, blosc-lz4, blosc-lz4hc, "
                        "blosc-zstd, blosc-zlib")
    p.add_argument("--workers", type=int,
                   help="DataLoader worker processes decoding images (default: one per spare core, at most 4; "
                        "0 decodes in the main process)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda (under torchrun: each rank's own GPU)")
    p.add_argument("--method-option", action="append", metavar="METHOD.OPTION=VALUE",
                   help="an option for one method, e.g. gradcam.relu=false (repeatable; JSON values)")
    p.add_argument("--strict", action="store_true",
                   help="stop at a file that is not an image or cannot be read (default: list and skip it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--no-verify-inputs", action="store_true",
                   help="on resume, do not read the stored part of the data again to check that its images "
                        "are unchanged (for very large data)")
    p.add_argument("--out", required=True, help="the store, e.g. RUN.zarr; the same command again resumes it")
    p.set_defaults(func=cmd_explain_dataset)

    p = sub.add_parser("verify", help="check a dataset store: every stored batch against the sizes and "
                       "checksums recorded with it; exit 0 when sound, 1 when a problem is found")
    p.add_argument("run", help="the store (RUN.zarr, from explain-dataset)")
    p.add_argument("--sizes-only", action="store_true",
                   help="compare the chunk files' sizes only, not their checksums (faster on a large store)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("bench", help="speed and faithfulness of every method, with ground truth; "
                       "`bench tasks`: the benchmark tasks; "
                       "`bench feedback`: attribution-guided training on the spurious-cue data")
    p.add_argument("experiment", nargs="?", choices=("methods", "tasks", "feedback"), default="methods",
                   help="methods (default): speed + faithfulness of every method on a task; tasks: list "
                        "the tasks; feedback: train a CNN "
                        "plain / with RRR / with CAM losses and compare accuracy with the cue broken")
    p.add_argument("--profile", choices=("quick", "full"), default="quick",
                   help="quick (default): the quick metrics with attribkit's methods, minutes a task; "
                        "full: every metric and method")
    p.add_argument("--task", help="a benchmark task: data with known evidence and its reference model, "
                   "trained on first use and cached (`attribkit bench tasks` lists them; default: shapes)")
    p.add_argument("--seeds", type=int, help="feedback: seeds per variant (default: the profile's, 5)")
    p.add_argument("--model", help="your model, " + MODEL_HELP + "; or, as before --task, synthetic "
                   "(--task shapes) or synthetic-vit (--task shapes-vit)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--data", help="a folder of images for your --model (no ground truth); or, as before "
                   "--task, digits (--task digits)")
    p.add_argument("--methods", nargs="+", help="default: the profile's methods")
    p.add_argument("--metrics", nargs="+", help="default: the profile's (quick: 9 on every task; full: every "
                   "registered metric that applies, the Quantus-named suite included)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--amp", action="store_true", help="run the methods under bf16 autocast")
    p.add_argument("--channels-last", action="store_true", help="the model and images in channels-last memory "
                                                                 "format")
    p.add_argument("--n-images", type=int, help="images scored (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--method-option", action="append", metavar="METHOD.OPTION=VALUE",
                   help="an option for one method, e.g. rise.n_masks=500 (repeatable; JSON values)")
    p.add_argument("--seed", type=int, default=0, help="the seed of the task's images and of its reference "
                   "model's training (default 0; feedback: the first of the seeds)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--json", action="store_true", help="tasks: as JSON")
    p.add_argument("--out", default="bench-out", help="folder for report.md, report.html, results.json, "
                   "results.jsonl and the plots (default: bench-out)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="a self-contained HTML report (one file, no server) of a dataset store "
                       "or a bench run folder")
    p.add_argument("run", help="a store (RUN.zarr, from explain-dataset) or a bench folder (bench --out DIR)")
    p.add_argument("--out", help="the HTML file (default: RUN.html beside a store, DIR/report.html in a bench "
                                 "folder)")
    p.add_argument("--images", help="a store's image folder (the store holds only the maps; default: the "
                                    "folder the run recorded)")
    p.add_argument("--size", type=int, help="thumbnail side in pixels (default 112)")
    p.add_argument("--limit", type=int, help="only the first N stored images")
    p.add_argument("--title", help="the page title")
    p.add_argument("--model-classes", metavar="imagenet|FILE",
                   help="the names of the model's outputs (imagenet, or a file with one name a line), so that "
                        "predictions are named and compared with the labels by name (default: the names the "
                        "run recorded; without names, labels and predictions are compared only when every "
                        "prediction is one of the data's classes)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="a tour in a few minutes: train (once, then cached) a small CNN on generated "
                       "images whose evidence is known, explain a few test images with every method (a PNG per "
                       "method and compare.png), and run a short benchmark with its HTML report")
    p.add_argument("--out", default="demo-out", help="folder for the PNGs and bench/ (default: demo-out)")
    p.add_argument("--images", type=int, default=4, help="test images explained by every method (default 4)")
    p.add_argument("--bench-images", type=int, help="images in the short benchmark (default 16)")
    p.add_argument("--compare", nargs="+", metavar="METHOD",
                   help="methods of compare.png (default: one per main family, 7; 'all': every built-in method)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors a user can fix are one line on stderr (exit 2),
    Ctrl-C is ``attribkit: interrupted`` (or the interrupt's message), exit 130."""
    args = build_parser().parse_args(argv)
    if "torch" not in sys.modules:  # read once, when torch loads its OpenMP runtime
        # idle OpenMP threads sleep instead of spinning: on a machine shared with one other busy
        # process, spinning made each forward ~25x slower (docs/cli.md); a value set by the user wins
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return args.func(args)
    except AttribkitError as exc:
        print(f"attribkit: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # a path the user gave
        where = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)
        print(f"attribkit: error: {where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"attribkit: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `attribkit methods | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
