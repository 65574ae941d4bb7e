"""Soak test: a long live run against a real RTSP server with a slow stub model.

Checks what short tests cannot: that latency and memory stay flat over many minutes of dropping frames (see
rtseg.offline.soak.run_live_soak). The server is the simulated camera (Debian's GStreamer RTSP server under
/usr/bin/python3, see .ci/run) serving the clip repeated end to end without re-encoding, so the stream runs for
the whole soak like a camera. Fails (exit 1) on an error or a frame inferred twice.

usage: python scripts/soak_live.py [--minutes 10] [--model-seconds 0.15] [--clip bikes.mp4]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from rtseg.core.media import SAMPLE_CLIP
from rtseg.offline.soak import run_live_soak

SHARED_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips" / "bikes.mp4"
BIKES_CLIP = SHARED_CLIP if SHARED_CLIP.exists() else SAMPLE_CLIP  # the sample on a fresh clone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model-seconds", type=float, default=0.15, help="stub model time per frame")
    parser.add_argument("--clip", type=Path, default=BIKES_CLIP, help=f"H.264 MP4 to serve (default {BIKES_CLIP})")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        print(f"error: clip not found: {args.clip}", file=sys.stderr)
        return 2
    report = run_live_soak(args.clip, args.minutes, args.model_seconds, say=functools.partial(print, flush=True))
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
