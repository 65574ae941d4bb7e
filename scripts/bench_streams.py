"""Multi-stream benchmark: 1, 2, 4, 8 streams of the shared clips on one engine (stub and real model), against
the same streams as separate processes, a dead stream's effect on the others and live latency.

    python scripts/bench_streams.py --json bench-streams.json                 # everything (about 15 min on 2 cores)
    python scripts/bench_streams.py --parts stub,dead,latency                 # only the stub parts
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rtseg.core.media import SAMPLE_CLIP
from rtseg.offline.bench_streams import BenchRun, grid, run_in_child, separate_processes

# The figures in docs/benchmarks.md were measured on the two clips beside the checkout; without them, the sample.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"
CLIPS = [str(SHARED / name) for name in ("car-detection.mp4", "bikes.mp4") if (SHARED / name).exists()] \
    or [str(SAMPLE_CLIP)]
PARTS = ("stub", "model", "dead", "latency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="+", default=CLIPS)
    parser.add_argument("--streams", default="1,2,4,8", help="stream counts, comma-separated")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which parts to run: {', '.join(PARTS)}")
    parser.add_argument("--model-frames", type=int, default=6, help="frames per stream with the real model")
    parser.add_argument("--model-size", type=int, default=256, help="shorter side fed to the real model")
    parser.add_argument("--model-batch", type=int, default=1, help="model.batch_size with the real model (GPU: 8)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)
    missing = [c for c in args.clips if not Path(c).is_file()]
    if missing:
        print(f"bench_streams: clip not found: {missing[0]}", file=sys.stderr)
        return 2
    counts = [int(n) for n in args.streams.split(",")]
    parts = set(args.parts.split(","))
    report: dict[str, object] = {"load_before": os.getloadavg()}
    if "stub" in parts:
        report["stub"] = grid(args.clips, counts, "stub", max_frames=100)
        for row in report["stub"]:
            print("stub", json.dumps(row))
    if "model" in parts:
        model = {"detector": "model", "batch_size": args.model_batch, "max_frames": args.model_frames,
                 "size": args.model_size}
        report["model"] = [{"engine": run_in_child(BenchRun(args.clips, n, **model)),
                            "separate": separate_processes(BenchRun(args.clips, n, **model))} for n in counts]
        for row in report["model"]:
            print("model", json.dumps(row))
    if "dead" in parts:
        paced = {"realtime": True, "max_frames": 100, "batch_size": 4, "per_call": 0.02, "per_image": 0.005}
        report["dead"] = {"alive": run_in_child(BenchRun(args.clips, 4, **paced)),
                          "with_a_dead_one": run_in_child(BenchRun(args.clips, 4, dead_streams=1, **paced))}
        print("dead", json.dumps(report["dead"]))
    if "latency" in parts:
        report["latency"] = run_in_child(BenchRun(args.clips, 4, realtime=True, max_frames=150, batch_size=4))
        print("latency", json.dumps(report["latency"]))
    report["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
