"""``python -m benchmarks.gpu [--dry-run] [--out DIR]``: see :mod:`benchmarks.gpu.run`."""

import sys

from benchmarks.gpu.run import main

sys.exit(main())
