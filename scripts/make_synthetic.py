#!/usr/bin/env python3
"""Write the synthetic shapes data: a COCO image data set, or MP4 videos with per-frame ground truth.

    python scripts/make_synthetic.py images --out data/shapes --train 1000 --val 200 --size 128
    python scripts/make_synthetic.py videos --out data/shape_videos --count 3 --frames 150

The generation itself lives in rtseg.offline.synthetic, so tests can make tiny sets on the fly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtseg.offline.synthetic import write_image_dataset, write_video


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", required=True)
    images = kinds.add_parser("images", help="COCO instance-segmentation images: OUT/train.json, OUT/val.json, OUT/images/")
    images.add_argument("--out", required=True, type=Path, help="output folder")
    images.add_argument("--train", type=_positive, default=1000, help="training images (default 1000)")
    images.add_argument("--val", type=_positive, default=200, help="validation images (default 200)")
    images.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    images.add_argument("--max-shapes", type=_positive, default=6, help="most shapes per image (default 6)")
    images.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    videos = kinds.add_parser("videos", help="MP4 videos of moving shapes + OUT/NAME.json ground truth per video")
    videos.add_argument("--out", required=True, type=Path, help="output folder")
    videos.add_argument("--count", type=_positive, default=3, help="number of videos (default 3)")
    videos.add_argument("--frames", type=_positive, default=150, help="frames per video (default 150)")
    videos.add_argument("--width", type=int, default=320, help="frame width, even (default 320)")
    videos.add_argument("--height", type=int, default=240, help="frame height, even (default 240)")
    videos.add_argument("--fps", type=_positive, default=30, help="frames per second (default 30)")
    videos.add_argument("--objects", type=_positive, default=4, help="moving shapes per video (default 4)")
    videos.add_argument("--seed", type=int, default=0, help="seed of the first video; video i uses seed + i (default 0)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.kind == "images":
        if args.size < 32:
            sys.exit(f"error: --size must be at least 32, got {args.size}")
        paths = write_image_dataset(args.out, args.train, args.val, args.size, args.seed, args.max_shapes)
        print(f"wrote {paths['train']}, {paths['val']} and {args.train + args.val} images in {paths['images']}")
        return 0
    if args.width % 2 or args.height % 2 or min(args.width, args.height) < 32:
        sys.exit(f"error: --width and --height must be even and at least 32, got {args.width}x{args.height}")
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        name = f"shapes_{args.seed + i:03d}"
        write_video(args.out / f"{name}.mp4", args.out / f"{name}.json", args.seed + i, args.width, args.height,
                    args.frames, args.fps, args.objects)
        print(f"wrote {args.out / name}.mp4 and {name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
