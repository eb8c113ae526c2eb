#!/usr/bin/env bash
# The headline comparisons on one CUDA GPU (<= 8 minutes): writes gpu-out/gpu.json and
# gpu-out/gpu.md. `benchmarks/gpu.sh --dry-run` runs the same code on the CPU at tiny sizes.
# Options: --out DIR, --sections kernels,attention,lrp,pixel_flipping,dataset, --budget SECONDS.
# Python: $PYTHON if set, else the repository's .venv/bin/python if present, else python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m benchmarks.gpu "$@"
