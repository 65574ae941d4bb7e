"""Benchmark rtseg against stock torchvision and the whole pipeline, in one run (rtseg/offline/benchmark.py).

  python scripts/benchmark.py --device cpu --weights none --sizes 432 --detections 8,75 --precisions auto,fp32 \\
      --frames 6 --json bench.json

Prints a Markdown table (as docs/benchmarks.md quotes it) and per-step times; --help lists every option.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtseg.offline.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
