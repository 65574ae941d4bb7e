"""Export speed of rtseg export (rtseg.offline.export_bench): frames of JSON Lines per second, 20 objects at 720p.

    python scripts/bench_exports.py
    python scripts/bench_exports.py --frames 5000 --formats mots
"""

from __future__ import annotations

import argparse
import os
import sys

from rtseg.offline.export_bench import BENCH_FORMATS, benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=3000, help="frames of the made-up run (default 3000)")
    parser.add_argument("--objects", type=int, default=20, help="tracked objects per frame (default 20)")
    parser.add_argument("--formats", default=",".join(BENCH_FORMATS), help="comma-separated (default: all timed)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.formats.split(",")) - set(BENCH_FORMATS))
    if unknown:
        parser.error(f"--formats takes {', '.join(BENCH_FORMATS)} (the formats that need no frames); not {', '.join(unknown)}")
    load = os.getloadavg()
    result = benchmark(args.frames, args.objects, formats=tuple(args.formats.split(",")))
    print(f"{result['frames']} frames, {result['objects']} objects each at {result['size']} "
          f"({result['run_bytes'] / 1e6:.1f} MB of JSON Lines); load average before {load[0]:.2f}, "
          f"after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for fmt, fps in result["fps"].items():
        print(f"  {fmt:<12} {fps:8.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
