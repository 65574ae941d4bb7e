"""``rtseg export``: a run's JSON Lines (``rtseg --save-json``) in the formats labelling tools and benchmarks read.

    rtseg export run.jsonl --format mots --output run.txt                 KITTI-MOTS text (frames from 0)
    rtseg export run.jsonl --format mots --first-frame 1 --class-ids kitti --output MOTS20-02.txt
    rtseg export run.jsonl --format mots-png --output instances/          16-bit PNG per frame
    rtseg export run.jsonl --format youtube-vis --categories ytvis.json --output results.zip
    rtseg export run.jsonl --format cvat-video --output run.xml           pre-annotations for CVAT
    rtseg export run.jsonl --format coco --frames clip.mp4 --every 30 --output stills/

The run is read as a stream, so a multi-hour file is never loaded whole; a line cut off (a run that was
stopped mid-write) is skipped and counted. Nothing is written under the output's name until the export is
complete (it is written beside it under a temporary name, then renamed). Formats and their rules:
docs/exports.md and the docstrings of :mod:`rtseg.offline.export_formats` and :mod:`rtseg.offline.export_cvat`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rtseg.core.commandline import ArgumentParser, run_command
from rtseg.core.errors import DataError, UsageError
from rtseg.offline.export_cvat import LAYOUTS, write_cvat_video
from rtseg.offline.export_formats import KITTI_CLASS_IDS, write_coco, write_mots, write_mots_png, write_youtube_vis
from rtseg.offline.export_io import FrameSource, RunReader, atomic_output

log = logging.getLogger(__name__)

FORMATS = ("mots", "mots-png", "youtube-vis", "cvat-video", "coco")


def parse_class_ids(text: str) -> dict[str, int]:
    """``kitti`` (car 1, person/pedestrian 2) or ``name=id,name=id``: class names to MOTS class ids."""
    if text == "kitti":
        return dict(KITTI_CLASS_IDS)
    pairs: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, number = item.partition("=")
        if not name or not number.strip().isdigit():
            raise UsageError(f"--class-ids takes 'kitti' or name=id pairs (person=2,car=1), got {item!r}")
        pairs[name.strip()] = int(number)
    return pairs


def read_categories(path: str | Path) -> dict[str, int]:
    """Class names to category ids from a YouTube-VIS or COCO JSON's ``categories``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(c["name"]): int(c["id"]) for c in data["categories"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read categories from {path}: {exc}") from exc


def export_run(run: str | Path, fmt: str, output: str | Path, *, overwrite: bool = False, first_frame: int = 0,
               class_ids: Mapping[str, int] | None = None, categories: Mapping[str, int] | None = None,
               video_id: int = 1, frames: str | Path | None = None, every: int = 1,
               cvat_layout: str = "tracks") -> dict[str, Any]:
    """Export ``run`` (JSON Lines) as ``fmt`` (one of :data:`FORMATS`) to ``output``; returns a summary.

    ``first_frame`` and ``class_ids``: MOTS frame numbering (0 KITTI-MOTS, 1 MOTSChallenge) and class names
    to MOTS class ids (None: the run's own). ``categories``: YouTube-VIS class names to category ids (None: the
    run's). ``video_id``: the YouTube-VIS video. ``frames`` (a video or a folder of frames) and ``every``: the
    COCO stills. ``cvat_layout``: "tracks" or "frames" (:mod:`rtseg.offline.export_cvat`). The summary counts
    what was written and left out, and ``skipped_lines``, the run's malformed lines.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    if first_frame not in (0, 1):
        raise UsageError(f"--first-frame must be 0 (KITTI-MOTS) or 1 (MOTSChallenge), got {first_frame}")
    if every < 1:
        raise UsageError(f"--every must be at least 1, got {every}")
    if cvat_layout not in LAYOUTS:
        raise UsageError(f"--cvat-layout must be one of {', '.join(LAYOUTS)}, got {cvat_layout!r}")
    if fmt == "coco" and frames is None:
        raise UsageError("--format coco writes the frames as images: give --frames (the video the run was made "
                         "of, or a folder of its frames)")
    reader = RunReader(run)
    source = FrameSource(frames) if fmt == "coco" and frames is not None else None
    output = Path(output)
    with atomic_output(output, overwrite) as temporary, tempfile.TemporaryDirectory() as scratch:
        if fmt == "mots":
            with temporary.open("w", encoding="utf-8") as out:
                summary = write_mots(reader, out, first_frame, class_ids)
        elif fmt == "mots-png":
            summary = write_mots_png(reader, temporary, first_frame, class_ids)
        elif fmt == "youtube-vis":
            summary = write_youtube_vis(reader, temporary, Path(scratch), video_id, categories,
                                        zipped=output.suffix.lower() == ".zip")
        elif fmt == "cvat-video":
            summary = write_cvat_video(reader, temporary, Path(scratch), cvat_layout)
        else:
            assert source is not None
            summary = write_coco(reader, temporary, source, every)
    summary.update(format=fmt, output=str(output), skipped_lines=reader.skipped)
    note = reader.skipped_line()
    if note:
        log.warning(note)
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    """What an export wrote and left out, in one line."""
    counts = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in summary.items()
                       if key not in ("format", "output", "unknown_classes") and value)
    unknown = summary.get("unknown_classes")
    return (f"wrote {summary['output']} ({summary['format']}): {counts}"
            + (f"; classes left out: {', '.join(unknown)}" if unknown else ""))


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="rtseg export", description="Export a run's JSON Lines (rtseg --save-json) as MOTS, "
                            "YouTube-VIS, CVAT for video or COCO.", epilog=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the JSON Lines file rtseg --save-json wrote")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--output", required=True, help="file (mots, youtube-vis: .json, or .zip holding "
                        "results.json; cvat-video: .xml) or folder (mots-png, coco)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--first-frame", type=int, default=0, help="MOTS: number of the first frame, 0 (KITTI-MOTS, "
                        "default) or 1 (MOTSChallenge)")
    parser.add_argument("--class-ids", help="MOTS: 'kitti' (car 1, person 2) or name=id pairs; other classes are "
                        "left out (default: the run's class ids)")
    parser.add_argument("--categories", help="YouTube-VIS: a YouTube-VIS or COCO JSON whose category ids the "
                        "classes take, by name; other classes are left out (default: the run's class ids)")
    parser.add_argument("--video-id", type=int, default=1, help="YouTube-VIS: the video's id (default 1)")
    parser.add_argument("--frames", help="COCO: the video the run was made of, or a folder of its frames")
    parser.add_argument("--every", type=int, default=1, help="COCO: every Nth frame (default 1)")
    parser.add_argument("--cvat-layout", default="tracks", choices=LAYOUTS,
                        help="CVAT: 'tracks' (one track per object, default) or 'frames' (one per object and frame: "
                             "what CVAT imports whole, as it keeps only a mask track's first mask)")
    return parser


def main(argv: list[str]) -> int:
    """Command line entry: export, then one line of what was written."""
    args = _parser().parse_args(argv)
    summary = export_run(args.run, args.format, args.output, overwrite=args.overwrite, first_frame=args.first_frame,
                         class_ids=parse_class_ids(args.class_ids) if args.class_ids else None,
                         categories=read_categories(args.categories) if args.categories else None,
                         video_id=args.video_id, frames=args.frames, every=args.every, cvat_layout=args.cvat_layout)
    print(summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
