"""D-RISE with every box of an image in one call against the naive loop (one call per box).

A randomly initialised torchvision Faster R-CNN (MobileNetV3-320 FPN, 3 classes, every
detection kept) explains ``--boxes`` of its own detections on each of ``--images`` images
with ``--masks`` masks. One call forwards each masked image once and scores every box on
it; the naive loop calls D-RISE once per box (each masked image forwarded once per box).
Printed: detector rows forwarded and seconds for each, their ratio, and the largest
difference of the maps (they must agree)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.drise_speed --masks 64 --boxes 5

It runs against whichever attribkit is importable (``PYTHONPATH`` picks a checkout).
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    import attribkit as ak
    from attribkit.testing import forward_rows
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--boxes", type=int, default=5, help="boxes explained per image")
    parser.add_argument("--masks", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    detector = fasterrcnn_mobilenet_v3_large_320_fpn(num_classes=3, weights=None, weights_backbone=None,
                                                     box_score_thresh=0.0).eval()
    x = torch.rand(args.images, 3, args.size, args.size)
    with torch.no_grad():
        found = detector(x)
    boxes = [f["boxes"][:args.boxes] for f in found]
    labels = [f["labels"][:args.boxes] for f in found]
    options = {"method": "drise", "n_masks": args.masks, "grid": 8, "forward_batch_size": 16}

    with forward_rows(detector) as rows:
        start = time.perf_counter()
        together = ak.explain(detector, x, ak.Box(boxes, labels), **options).values
        one_call = time.perf_counter() - start
    one_call_rows = sum(rows)
    with forward_rows(detector) as rows:
        start = time.perf_counter()
        per_box = torch.cat([ak.explain(detector, x[i:i + 1], ak.Box(b[None], int(lab)), **options).values
                             for i in range(args.images) for b, lab in zip(boxes[i], labels[i])])
        naive = time.perf_counter() - start
    print(f"{args.images} images x {args.boxes} boxes, {args.masks} masks, {args.size} px")
    print(f"one call (every box of an image from one forward): {one_call_rows:5d} rows  {one_call:7.2f} s")
    print(f"naive loop (one call per box):                     {sum(rows):5d} rows  {naive:7.2f} s")
    print(f"naive / one call: {naive / one_call:.2f}x time, {sum(rows) / one_call_rows:.2f}x rows; "
          f"max |difference| of the maps {float((together - per_box).abs().max()):.2e}")


if __name__ == "__main__":
    main()
