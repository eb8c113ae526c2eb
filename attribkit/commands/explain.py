"""``attribkit explain IMAGE|FOLDER ...``: heat maps of a few images, written into a folder.

Every input is checked before the model is loaded: each argument is an image
file or a folder of images (listed as ``explain-dataset`` lists one, its
skipped entries printed), no two images may write the same output file, and
``--out`` must be a new or empty folder unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attribkit.commands.common import factories_from_cwd
from attribkit.errors import InputError


def image_files(arguments: Sequence[str]) -> list[tuple[Path, str]]:
    """The image files the arguments name, each with the name its outputs take: a file as
    given (its stem), a folder's images as :func:`attribkit.image_folder` lists them (flat,
    or one sub-folder per class: ``cat/01.png`` is named ``cat_01``; what it skips is
    printed on stderr). Raises :class:`InputError` for paths that do not exist and for a
    folder without images, naming the extensions read."""
    from attribkit.datasets.folder import IMAGE_EXTENSIONS, image_folder

    missing = [a for a in arguments if not Path(a).exists()]
    if missing:
        raise InputError(f"no such image file or folder: {', '.join(missing)}")
    files: list[tuple[Path, str]] = []
    for argument in arguments:
        path = Path(argument)
        if not path.is_dir():
            files.append((path, path.stem))
            continue
        listed = image_folder(path)
        for entry, reason in listed.skipped:
            print(f"skipped {path / entry}: {reason}", file=sys.stderr)
        if not listed.files:
            others = f" ({len(listed.skipped)} other entries skipped)" if listed.skipped else ""
            raise InputError(f"{path} holds no images{others}; explain reads files ending in "
                             f"{', '.join(IMAGE_EXTENSIONS)}, in the folder or its class sub-folders")
        files += [(f, Path(i).with_suffix("").as_posix().replace("/", "_")) for f, i in zip(listed.files, listed.ids)]
    return files


def output_stems(files: Sequence[tuple[Path, str]], method: str) -> list[str]:
    """``NAME_METHOD`` per file; :class:`InputError` when two files would write the same name."""
    stems = [f"{name}_{method}" for _, name in files]
    seen: dict[str, Path] = {}
    for stem, (f, _) in zip(stems, files):
        if stem in seen:
            raise InputError(f"{seen[stem]} and {f} would both be written as {stem}.png; explain them in "
                             "separate runs (another --out) or rename one")
        seen[stem] = f
    return stems


def check_out(out: Path, overwrite: bool) -> None:
    """``--out`` is a new folder, an empty one, or (``overwrite``) any folder; never a file."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder; name a new or empty folder")
    if out.is_dir() and not overwrite:
        entries = sorted(p.name for p in out.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise InputError(f"--out {out} is not empty ({len(entries)} entries: {shown}); name a new or "
                             "empty folder, or pass --overwrite to write into it (files of the same name "
                             "are replaced)")


def read_images(paths: Sequence[str | Path], size: int, resize_only: bool) -> Any:
    """The image files as one normalised ``(B, 3, size, size)`` batch: centre-cropped as
    ImageNet models are evaluated, or (``resize_only``) the whole image squashed to the size."""
    from attribkit.images import load_image, to_input

    pictures = []
    for path in paths:
        try:
            pictures.append(load_image(path))
        except OSError as exc:  # PIL cannot identify the file, or cannot read it
            raise InputError(f"cannot read image {path}: {exc}") from None
    if not resize_only:
        print(f"note: images are resized (shorter side {round(size * 256 / 224)} px) and centre-cropped "
              f"to {size}x{size}; --resize-only keeps the whole image", file=sys.stderr)
    return to_input(pictures, size, crop=not resize_only)


def cmd_explain(args: argparse.Namespace) -> int:
    """``attribkit explain``: per image ``IMAGE_METHOD.png`` and ``.npy``, and ``grid_METHOD.png``."""
    files = image_files(args.images)
    out = Path(args.out)
    check_out(out, args.overwrite)
    import numpy as np

    from attribkit.api import explain, get_method
    from attribkit.images import IMAGENET_MEAN, IMAGENET_STD, class_label, to_display
    from attribkit.models import open_model
    from attribkit.viz import render, save, show

    stems = output_stems(files, get_method(args.method).name)
    factories_from_cwd(args.model)
    loaded = open_model(args.model, args.weights)
    batch = read_images([f for f, _ in files], args.size, args.resize_only)
    result = explain(loaded.model, batch, target=args.target, method=args.method,
                     layer=args.layer, batch_size=args.batch_size)
    shown = to_display(batch, IMAGENET_MEAN, IMAGENET_STD)  # to_input's normalisation
    out.mkdir(parents=True, exist_ok=True)
    values = result.numpy()
    for i, ((path, _), stem) in enumerate(zip(files, stems)):
        save(render(values[i], shown[i], mode=args.mode, sign=args.sign), out / f"{stem}.png")
        np.save(out / f"{stem}.npy", values[i])
        target = ""
        if result.target is not None:
            index = int(result.target[i])
            name = f" ({class_label(index, loaded.class_names)})" if loaded.class_names else ""
            target = f" target={index}{name}"
        print(f"{path}: {out / stem}.png{target}")
    modes = list(dict.fromkeys(["original_image", "heat_map", args.mode]))
    grid = save(show(result, shown, mode=modes, sign=args.sign, class_names=loaded.class_names,
                     colorbar="column"), out / f"grid_{result.method}.png")
    print(f"grid: {grid}")
    return 0
