"""Soak test: a long synthetic stream through the whole pipeline, watching memory, threads and queues.

See rtseg.offline.soak.run_soak for what it runs and reports; it fails (exit 1) on an error, RSS growth of
50 MB or more, a thread left behind, or a queue past its bound.

    python scripts/soak.py                       # 20,000 frames
    python scripts/soak.py --frames 2000 --slow-sink 0.004   # an encoder slower than the model
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from rtseg.offline.soak import run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--slow-sink", type=float, default=0.0, metavar="SECONDS",
                        help="add a sink that takes this long per frame (slower than the model)")
    parser.add_argument("--streams", type=int, default=1, help="split the frames over this many streams, one model")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    report = run_soak(args.frames, args.slow_sink, streams=args.streams)
    print("\n".join(report.lines()))
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "rss_growth_mb": report.rss_growth_mb}, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
