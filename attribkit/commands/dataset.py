"""``attribkit explain-dataset DATA``: every image of a folder into a resumable store."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from attribkit.commands.common import factories_from_cwd, parse_method_options
from attribkit.errors import AttribkitError, StoreWriteError
from attribkit.models import note_on_stderr


def os_reason(exc: OSError) -> str:
    """``File too large: out/maps/c/0`` for an ``OSError`` (its message when it has no errno)."""
    if exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


def cmd_explain_dataset(args: argparse.Namespace) -> int:
    """``attribkit explain-dataset DATA``: every image of a folder into a resumable store
    (also one rank of ``torchrun``)."""
    from attribkit.datasets.folder import image_folder
    from attribkit.datasets.run import explain_dataset
    from attribkit.models import open_model

    factories_from_cwd(args.model)
    data = image_folder(args.data, args.size, crop=not args.resize_only)
    loaded = open_model(args.model, args.weights, log=None if _rank() else note_on_stderr)
    model = loaded.model.to(_device(args.device))
    options = parse_method_options(args.method_option or [])
    target: Any = args.target
    if target is not None and target != "label":
        try:
            target = int(target)
        except ValueError:
            raise AttribkitError(f"--target takes a class index or 'label', got {target!r}") from None
    try:
        store = explain_dataset(model, data, args.methods, args.out, target=target, layer=args.layer,
                                batch_size=args.batch_size, num_workers=_workers(args.workers),
                                metrics=args.metrics or (), dtype=args.dtype, compressor=args.compressor,
                                progress=not args.no_progress, strict=args.strict,
                                verify_inputs=not args.no_verify_inputs,
                                model_classes=loaded.class_names, **options)
    except AttribkitError:
        raise  # StoreWriteError and StoreError say what is kept themselves
    except OSError as exc:  # a file too large, a full disk, a folder that went away, ...
        raise StoreWriteError(f"the run stopped: {os_reason(exc)}; the batches stored before it are kept "
                              f"in {args.out}, and the same command resumes from them") from exc
    if _rank():
        return 0
    for path, reason in store.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    run = store.runs[-1]
    rate = run["images"] / run["seconds"] if run["seconds"] else 0.0
    stored = "" if store.complete else f" ({int(store.done.sum())} of {len(store)} stored)"
    print(f"{run['images']} images in {run['seconds']:.1f} s ({rate:.1f} images/s, {run['processes']} "
          f"process{'es' if run['processes'] > 1 else ''}): {store.path}{stored}")
    return 0


def _workers(given: int | None) -> int:
    """``--workers``, by default one DataLoader worker per spare core of this process's share
    of the machine (``torchrun`` starts ``LOCAL_WORLD_SIZE`` processes per node), at most 4."""
    if given is not None:
        return given
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1))


def _rank() -> int:
    """This process's rank under ``torchrun`` (0 outside it)."""
    return int(os.environ.get("RANK", "0"))


def _device(name: str) -> str:
    """``--device``; plain ``cuda`` under ``torchrun`` is this process's own GPU (``LOCAL_RANK``)."""
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return name
