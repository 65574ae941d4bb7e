"""Judge the whole pipeline against ground truth on a synthetic video (rtseg.offline.eval_pipeline).

    python scripts/eval_pipeline.py --weights runs/shapes/best.pt
    python scripts/eval_pipeline.py --weights runs/shapes/best.pt --seed 3 --frames 300 --json report.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from rtseg.core.config import load_config
from rtseg.core.errors import RtsegError, RuntimeFailure
from rtseg.offline import eval_pipeline


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, epilog=eval_pipeline.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", required=True, help="checkpoint trained on the synthetic shapes, or 'none'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the video (default 0; training images never "
                        "come from the video generator)")
    parser.add_argument("--frames", type=int, default=150, help="frames of video (default 150)")
    parser.add_argument("--width", type=int, default=160, help="default 160")
    parser.add_argument("--height", type=int, default=128,
                        help="default 128: the recipe's training size, so the model sees the frames unresampled")
    parser.add_argument("--objects", type=int, default=4, help="shapes moving in the video (default 4)")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="the pipeline's (default 0.5)")
    parser.add_argument("--min-visible", type=float, default=0.5,
                        help="shapes less visible than this fraction are don't-care (default 0.5)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--precision", default="auto", help="auto | fp32 | fp16 | bf16 (default auto)")
    parser.add_argument("--config", help="YAML settings for the pipeline, as for python -m rtseg --config "
                                         "(tracking, render, ...); the flags above win")
    parser.add_argument("--out", help="folder for the video, ground truth, annotated MP4 and export (default: a "
                        "temporary folder, removed afterwards)")
    parser.add_argument("--json", help="also write the report here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out or scratch)
        out.mkdir(parents=True, exist_ok=True)
        try:
            config = load_config(args.config)
            config = dataclasses.replace(config, model=dataclasses.replace(
                config.model, weights=args.weights, device=args.device, precision=args.precision,
                score_threshold=args.score_threshold))
            report = eval_pipeline.evaluate_pipeline(out, config, seed=args.seed, frames=args.frames,
                                                     width=args.width, height=args.height, objects=args.objects,
                                                     min_visible=args.min_visible)
        except RtsegError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1 if isinstance(exc, RuntimeFailure) else 2
    print("\n".join(eval_pipeline.report_lines(report)))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
