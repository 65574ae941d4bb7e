"""Cost of scene analytics per frame (docs/analytics.md): 20 objects, 3 zones, 2 lines at 1280x720 by default.

    python scripts/bench_analytics.py
    python scripts/bench_analytics.py --objects 50 --zones 5 --lines 4
    python scripts/bench_analytics.py --live ../shared/data/clips/bikes.mp4   # an RTSP camera with and without a zone
    python scripts/bench_analytics.py --mqtt ../shared/data/clips/bikes.mp4   # a run without MQTT, with, broker killed
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rtseg.offline.bench_analytics import live_latency, measure, publishing_rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20)
    parser.add_argument("--zones", type=int, default=3)
    parser.add_argument("--lines", type=int, default=2)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--live", type=Path, metavar="CLIP", help="also: latency of an RTSP camera serving CLIP "
                                                                    "(Debian's GStreamer RTSP server), without and with a zone")
    parser.add_argument("--mqtt", type=Path, metavar="CLIP", help="also: frames per second of a run of CLIP without "
                                                                   "MQTT, with Mosquitto, and with it killed mid-run")
    args = parser.parse_args(argv)
    cost = measure(args.objects, args.zones, args.lines, args.height, args.width, args.frames)
    print(cost.line())
    if args.live is not None:
        for analytics in (False, True, False, True):  # alternated, so both see the same load
            print(live_latency(args.live, analytics).line())
    if args.mqtt is not None:
        for rate in publishing_rates(args.mqtt):
            print(rate.line())
    print("load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
