"""Helpers shared by several sub-commands."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attribkit.errors import AttribkitError

BUILTIN_SOURCES = ("torchvision", "timm", "synthetic")


def factories_from_cwd(model: str) -> None:
    """Let ``--model pkg.mod:factory`` find ``pkg.mod`` in the current folder, as ``python -m`` does
    (the ``attribkit`` script's own folder is on ``sys.path`` instead)."""
    if model.partition(":")[0] not in BUILTIN_SOURCES and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


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


def read_class_names(value: str | None) -> list[str] | str | None:
    """``--model-classes``: ``"imagenet"`` as it is, else the names in the file ``value``,
    one a line (blank lines ignored)."""
    if value is None or value.lower() == "imagenet":
        return value
    path = Path(value)
    if not path.is_file():
        raise FileNotFoundError(2, "no such file of class names", value)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AttribkitError(f"{value} is not a text file of class names (UTF-8): {exc.reason}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise AttribkitError(f"{value} holds no class names (one a line)")
    return names


def print_listing(rows: list[dict[str, Any]], columns: Sequence[str], priority: Sequence[str], *, wide: bool,
                  hint: str) -> None:
    """Print the table of ``rows``, fitted to the terminal's width (:func:`attribkit.tables.fit_table`)
    when stdout is a terminal or ``COLUMNS`` is set, unless ``wide``; a line under it names the
    columns left out, with ``hint`` (where to see everything)."""
    from attribkit.tables import fit_table, format_table

    if wide or not (sys.stdout.isatty() or "COLUMNS" in os.environ):
        print(format_table(rows, columns))
        return
    width = shutil.get_terminal_size().columns
    table, hidden = fit_table(rows, columns, width, priority)
    print(table)
    if hidden:
        print(textwrap.fill(f"({', '.join(hidden)} left out to fit {width} columns; --wide shows every "
                            f"column{hint})", width))
