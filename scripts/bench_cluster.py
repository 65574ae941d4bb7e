"""Cluster benchmark: an archive of 12 short clips with the real model on the CPU, on 1 worker, on 2 workers
(a local Ray instance) and on the single-machine engine; files/s, frames/s and Ray's overhead per file.

    python scripts/bench_cluster.py --frames 6 --json bench-cluster.json     # about 4 min on 2 loaded cores
    python scripts/bench_cluster.py --stub --frames 30                      # a stub that sleeps 50 ms a frame
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path

from rtseg.cluster.bench import compare, model_config
from rtseg.core.media import SAMPLE_CLIP
from rtseg.offline.stubs import BatchCostDetector

# The figures in docs/benchmarks.md were measured on the bikes clip beside the checkout; without it, the sample.
SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips" / "bikes.mp4"
CLIP = SHARED_CLIP if SHARED_CLIP.exists() else SAMPLE_CLIP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--frames", type=int, default=8, help="frames per file")
    parser.add_argument("--size", type=int, default=256, help="model input size (shorter side)")
    parser.add_argument("--detections", type=int, default=10, help="model.detections_per_image")
    parser.add_argument("--stub", action="store_true",
                        help="a stub costing 20 ms per call and 30 ms per frame, sleeping (no CPU, as on a GPU)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        print(f"bench_cluster: clip not found: {args.clip}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-cluster-") as work:
        stub = functools.partial(BatchCostDetector, 0.02, 0.03) if args.stub else None
        report = compare(args.clip, Path(work), args.files, model_config(args.size, args.frames, args.detections), stub,
                         on_row=lambda row: print(json.dumps(row), flush=True))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
