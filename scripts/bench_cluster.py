"""Cluster benchmark: an archive of 12 short clips with the real model on the CPU, on 1 worker, on 2 workers
(a local Ray instance) and on the single-machine engine; files/s, frames/s and Ray's overhead per file.

    python scripts/bench_cluster.py --json bench-cluster.json          # about 10 min on 2 loaded cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rtseg.cluster.bench import compare, model_config

CLIP = Path("../shared/data/clips/bikes.mp4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--frames", type=int, default=8, help="frames per file")
    parser.add_argument("--size", type=int, default=256, help="model input size (shorter side)")
    parser.add_argument("--detections", type=int, default=10, help="model.detections_per_image")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        print(f"bench_cluster: clip not found: {args.clip}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-cluster-") as work:
        report = compare(args.clip, Path(work), args.files, model_config(args.size, args.frames, args.detections))
    for row in report["rows"]:
        print(json.dumps(row))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
