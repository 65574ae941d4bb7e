"""Crossings counted through the whole pipeline against the truth: the CLI, the API and the page on synthetic videos
of shapes crossing a line (rtseg/offline/analytics_pipeline.py), with a model that knows the shapes.

    python scripts/eval_analytics_pipeline.py --weights runs/shapes/best.pt --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from rtseg.core.config import Config, apply_overrides
from rtseg.offline.analytics_pipeline import Counts, CrossingVideo, count_api, count_cli, crossing_video, errors


def count_page(case: CrossingVideo, weights: str) -> Counts:
    """The page's video job (rtseg serve's app, driven by FastAPI's TestClient) with the line drawn."""
    from fastapi.testclient import TestClient

    from rtseg.detect.maskrcnn import MaskRCNNDetector
    from rtseg.pipeline.planner import detector_settings
    from rtseg.web.app import WebSettings, create_app
    from rtseg.web.sharing import MIN_SCORE

    config = apply_overrides(Config(), {"model": {"weights": weights}, "output": {"show": False}}, "eval")
    shared = dataclasses.replace(detector_settings(config, floor=MIN_SCORE), classes=[])  # as rtseg serve loads it
    with TestClient(create_app(MaskRCNNDetector(shared), WebSettings(config=config)), base_url="http://localhost") \
            as client:
        regions = client.post("/api/regions", json={"lines": [case.line]}).json()["id"]
        job = client.post("/api/videos", params={"name": case.video.name, "regions": regions},
                          content=case.video.read_bytes()).json()["id"]
        while (status := client.get(f"/api/videos/{job}").json())["state"] in ("queued", "running"):
            time.sleep(0.5)
    assert status["state"] == "done", status
    line = status["scene"]["lines"][0]
    return {"in": line["crossed_in"], "out": line["crossed_out"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="a checkpoint that knows the shapes (the training recipe's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    total = {"truth": 0, "cli": 0, "api": 0, "page": 0}
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            case = crossing_video(Path(work), seed=seed, frames=args.frames)
            counted = {"cli": count_cli(case, args.weights, Path(work)), "api": count_api(case, args.weights),
                       "page": count_page(case, args.weights)}
            total["truth"] += sum(sum(c.values()) for c in case.truth.values())
            line = f"seed {seed}: truth {case.truth}"
            for front, counts in counted.items():
                total[front] += errors(counts, case.truth)
                line += f"; {front} {counts} ({errors(counts, case.truth)} errors)"
            print(line, flush=True)
    print(f"{total['truth']} true crossings over {len(args.seeds)} videos; count errors: CLI {total['cli']}, "
          f"API {total['api']}, page {total['page']}")
    print("load average: " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
