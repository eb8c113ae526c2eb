"""Bytes on disk of a dataset run's maps, per stored dtype and compressor.

    python benchmarks/store_size.py [--images 1000] [--size 224] [--model resnet18]
        [--methods saliency gradcam] [--batch 50] [--out DIR]

``explain_dataset`` explains ``--images`` smooth random pictures (``--size`` px)
with a torchvision model of random weights (the sizes depend on the maps, not on
how good the model is) into a float32, uncompressed store, once; then
:func:`~attribkit.datasets.recode.recode_store` writes the same maps in every
dtype and compressor (the chunks a run with those settings writes, byte for
byte, without computing the maps again) and reports each method's bytes on disk
(chunk files only), the seconds each copy took, and the largest difference from
the float32 maps (relative to the method's largest ``|value|``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

import attribkit as ak
from attribkit.datasets.encoding import COMPRESSORS, DTYPES
from attribkit.datasets.recode import recode_store


def pictures(n: int, size: int) -> torch.Tensor:
    """``n`` smooth random pictures, normalised as for an ImageNet model."""
    gen = torch.Generator().manual_seed(0)
    small = torch.rand(n, 3, max(1, size // 8), max(1, size // 8), generator=gen)
    x = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (x - mean) / std


def chunk_bytes(store: Path, method: str) -> int:
    """The bytes of ``method``'s chunk files."""
    return sum(p.stat().st_size for p in (store / "maps" / method / "c").rglob("*") if p.is_file())


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--methods", nargs="+", default=["saliency", "gradcam"])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--out", help="keep the stores here (default: a temporary folder)")
    args = parser.parse_args()

    root = Path(args.out or tempfile.mkdtemp())
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.get_model(args.model).eval()
    x = pictures(args.images, args.size)
    data = torch.utils.data.TensorDataset(x)
    source = root / "float32-none.zarr"
    start = time.perf_counter()
    store = ak.explain_dataset(model, data, args.methods, source, batch_size=args.batch, progress=False)
    print(f"explain_dataset: {args.images} images, {time.perf_counter() - start:.0f} s; shapes "
          + ", ".join(f"{m} {tuple(store[m].shape[1:])}" for m in store.methods), flush=True)
    reference = {m: np.asarray(store[m]) for m in store.methods}
    rows = []
    for dtype in DTYPES:
        for compressor in COMPRESSORS:
            out = source if (dtype, compressor) == ("float32", "none") else root / f"{dtype}-{compressor}.zarr"
            start = time.perf_counter()
            if out != source:
                recode_store(source, out, dtype=dtype, compressor=compressor)
            seconds = time.perf_counter() - start
            copy = ak.open_store(out)
            sizes = [chunk_bytes(out, m) for m in store.methods]
            error = max(float(np.max(np.abs(np.asarray(copy[m], dtype=np.float32) - reference[m]))
                              / np.max(np.abs(reference[m]))) for m in store.methods)
            rows.append((dtype, compressor, sizes, seconds, error))
            print(f"{dtype} {compressor}: " + ", ".join(f"{m} {_size(s)}" for m, s in zip(store.methods, sizes)),
                  flush=True)
    base = rows[0][2]
    print(f"\n{args.images} images of {args.size}x{args.size}, {args.model} (random weights), batch {args.batch}\n")
    print("| dtype | compressor | " + " | ".join(f"{m} (x float32)" for m in store.methods)
          + " | copy s | max error / max value |")
    print("|---|---|" + "---|" * len(store.methods) + "---|---|")
    for dtype, compressor, sizes, seconds, error in rows:
        cells = " | ".join(f"{_size(s)} ({s / b:.2f})" for s, b in zip(sizes, base))
        print(f"| {dtype} | {compressor} | {cells} | {seconds:.1f} | {error:.1e} |")


if __name__ == "__main__":
    main()
