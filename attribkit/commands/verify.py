"""``attribkit verify RUN [--json]``: the health of a dataset store (exit 0 when it is sound, 1 when not)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attribkit.errors import StoreError


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every stored batch of ``args.run`` against its record and print what was found
    (``--json``: as JSON). A path that is no store at all is a one-line error (exit 2)."""
    path = Path(args.run)
    if not path.exists():
        raise FileNotFoundError(2, "no such store", str(path))
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path} is not a dataset store (it has no zarr.json; explain-dataset --out RUN.zarr "
                         "writes one)")
    from attribkit.datasets.store import verify_path

    health = verify_path(path, checksums=not args.sizes_only)
    print(json.dumps(health.to_dict(), indent=2) if args.json else health.summary())
    return 0 if health.ok else 1
