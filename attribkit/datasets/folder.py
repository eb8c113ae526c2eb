"""Image folders as datasets, with their bad files named instead of fatal.

A folder is *flat* (image files directly inside: no labels) or has *class
sub-folders*, torchvision ``ImageFolder``'s layout: ``root/CLASS/.../file``,
classes sorted by name, label = the class's position. Hidden entries (``.name``)
are ignored. Files without an image extension are left out when the folder is
listed and kept in :attr:`ImageFolder.skipped`; a file that has an image
extension but cannot be decoded (truncated, not really an image) becomes an
:class:`Unreadable` item when it is loaded, so one bad file costs one row, not
the run.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from attribkit.errors import InputError

#: torchvision's ImageFolder extensions
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """An item whose image could not be read: ``explain_dataset`` stores its row as
    skipped, with ``reason`` (or raises, with ``strict=True``). Any dataset may return one."""

    reason: str


class ImageFolder:
    """The images of a folder as model inputs (see the module docstring).

    Items are ``(image,)`` for a flat folder and ``(image, label)`` with class
    sub-folders; ``image`` is a ``(3, size, size)`` tensor made by
    :func:`attribkit.images.to_input` (centre crop or, ``crop=False``, the whole
    image resized; ImageNet normalisation).

    Attributes:
        root: the folder.
        ids: each file's path relative to ``root`` (POSIX separators; bytes of a name
            that are not UTF-8 written as ``\\xNN``, so every id can be stored and shown).
        labels: each file's class index, or ``None`` for a flat folder.
        classes: the class names (sub-folder names), or ``None``.
        skipped: ``(path, reason)`` of the files left out because they are not images.
    """

    def __init__(self, root: str | Path, size: int = 224, *, crop: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root} is not a folder of images")
        self.size, self.crop = size, crop
        top, odd = _visible(self.root.iterdir())
        folders = [p for p in top if p.is_dir()]
        self.classes = [_readable(p.name) for p in folders] or None
        found: list[tuple[Path, int | None]] = []
        others = []
        if self.classes is None:
            found = [(p, None) for p in top]
        else:
            for label, folder in enumerate(folders):
                inside, odd_inside = _visible(folder.rglob("*"))
                found += [(p, label) for p in inside if not p.is_dir()]
                odd += odd_inside
            others = [p for p in top if not p.is_dir()]  # files beside the class folders
        self.skipped = [(self._id(p), "not in a class folder") for p in others]
        self.skipped += [(self._id(p), reason) for p, reason in odd]
        self.skipped += [(self._id(p), f"not an image file ({p.suffix or 'no extension'})")
                         for p, _ in found if p.suffix.lower() not in IMAGE_EXTENSIONS]
        images = [(p, label) for p, label in found if p.suffix.lower() in IMAGE_EXTENSIONS]
        self.files = [p for p, _ in images]
        self.ids = [self._id(p) for p in self.files]
        self.labels = None if self.classes is None else [label for _, label in images]

    def _id(self, path: Path) -> str:
        return _readable(path.relative_to(self.root).as_posix())

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, ...] | Unreadable:
        from attribkit.images import load_image, to_input

        try:
            picture = load_image(self.files[index])
        except Exception as exc:  # noqa: BLE001 - whatever PIL raises, the file is bad, not the run
            return Unreadable(f"cannot read image: {type(exc).__name__}: {exc}")
        image = to_input(picture, self.size, crop=self.crop)[0]
        return (image,) if self.labels is None else (image, self.labels[index])


def _visible(paths: Any) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files and folders among ``paths`` whose own names do not start with a dot, sorted,
    and the other entries with why they are skipped (an empty folder named like an image file,
    a symbolic link to nothing or to itself, a device or pipe); nothing is dropped unsaid."""
    kept, odd = [], []
    for p in sorted(q for q in paths if not q.name.startswith(".")):
        if p.is_dir() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(p.iterdir()):
            odd.append((p, "an empty folder, not an image file"))
        elif p.is_file() or p.is_dir():
            kept.append(p)
        elif p.is_symlink():
            odd.append((p, "a symbolic link that leads nowhere (its target is missing, or it loops)"))
        else:
            odd.append((p, "not a regular file"))
    return kept, odd


def image_folder(root: str | Path, size: int = 224, *, crop: bool = True) -> ImageFolder:
    """The images under ``root`` as a dataset for :func:`~attribkit.datasets.run.explain_dataset`
    (see :class:`ImageFolder`)."""
    return ImageFolder(root, size, crop=crop)


def _readable(name: str) -> str:
    """``name`` with the bytes that are not UTF-8 (decoded by Python as lone surrogates)
    written as ``\\xNN``: a file name from a Latin-1 disk can then be stored as JSON and
    zarr strings and printed."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def id_path(root: str | Path, item_id: str) -> Path:
    """The file of ``item_id`` (an :attr:`ImageFolder.ids` entry) under ``root``: the
    inverse of the ``\\xNN`` spelling of bytes that are not UTF-8."""
    plain = Path(root) / item_id
    if plain.exists():  # a name that holds a backslash itself
        return plain
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), item_id.encode("utf-8"))
    return Path(root) / os.fsdecode(raw)
