"""Peak memory above the loaded model of one ``ak.explain`` call, in a fresh process.

    python benchmarks/memory_peak.py [--method captum.integrated_gradients]
        [--model resnet50] [--images 4] [--size 224] [--batch-size N]
        [--option internal_batch_size=200 ...] [--threads N]

A child process builds the torchvision model (random weights: memory and time do
not depend on what it learnt) and ``--images`` random pictures of ``--size`` px,
notes its resident memory (``VmRSS``), resets the kernel's high-water mark
(``VmHWM``, by writing ``5`` to ``/proc/self/clear_refs``), runs the call once and
reads the high-water mark again. The difference is the call's peak above the
loaded model, as the operating system saw it (tracemalloc does not see torch's
allocations). A fresh process per measurement, so no earlier call's freed memory
hides this one's. Linux only. Prints one JSON line: peak above the model (GiB),
the model's resident memory, seconds, and the settings.

``--option internal_batch_size=200`` (50 steps x 4 images) forces Captum's
single batch, attribkit's behaviour before memory was bounded by default.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

GIB = 2**30


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def child(args: argparse.Namespace) -> dict:
    """Build, measure, call, measure (runs in the fresh process)."""
    import torch
    import torchvision

    import attribkit as ak

    torch.set_num_threads(args.threads)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    x = torch.randn(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    options = dict(o.split("=", 1) for o in args.option)
    options = {k: _value(v) for k, v in options.items()}
    ak.get_method(args.method).load()  # plugins and Captum imported before the baseline
    loaded = _status_kib("VmRSS") * 1024
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = time.perf_counter()
    result = ak.explain(model, x, method=args.method, batch_size=args.batch_size, **options)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") * 1024
    return {"method": args.method, "model": args.model, "images": args.images, "size": args.size,
            "batch_size": args.batch_size, "options": options, "threads": args.threads,
            "loaded_gib": round(loaded / GIB, 3), "peak_above_model_gib": round((peak - loaded) / GIB, 3),
            "seconds": round(seconds, 1), "values_shape": list(result.values.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="captum.integrated_gradients")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--option", action="append", default=[],
                        help="a method option as NAME=VALUE (JSON values), repeatable")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    done = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the measuring process failed:\n{done.stderr}")
    print(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
