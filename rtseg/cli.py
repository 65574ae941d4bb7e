"""Command line: parse flags, check everything that can be checked before starting, run, report.

Every expected failure is one line on stderr and a documented exit code:
0 success (also when the user closes the window), 1 a failure while running,
2 a usage, configuration or input error found before any work, 130 Ctrl-C.
Tracebacks are shown only with --debug.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from rtseg.config import Config, apply_overrides, load_config
from rtseg.errors import RtsegError, UsageError

log = logging.getLogger("rtseg")

EXAMPLES = """\
examples:
  rtseg --source clip.mp4 --output clip-seg.mp4          segment a file into an annotated MP4
  rtseg --source clip.mp4 --output out.mp4 --no-show --classes person,car --score-threshold 0.6
  rtseg --source clip.mp4 --output out.mp4 --weights model.pt      use a local weights file
  rtseg --source clip.mp4 --output out.mp4 --weights none --size 320 --max-frames 50   plumbing check, random weights
  rtseg --source clip.mp4 --config configs/default.yaml --device cuda --precision fp16

exit codes: 0 done, 1 failed while running, 2 bad usage/config/input, 130 interrupted
"""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so every usage error looks alike."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="rtseg",
        description="Real-time Mask R-CNN instance segmentation for video files.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", required=True, help="video file to read")
    parser.add_argument("--output", help="annotated MP4 to write (keeps every frame, its timestamps and the audio)")
    parser.add_argument("--config", help="YAML file overriding configs/default.yaml; flags override both")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"),
                        help="auto = fp16 on CUDA, fp32 on CPU; bf16 = faster on CPUs with AVX512-BF16")
    parser.add_argument("--model", choices=("maskrcnn_v1", "maskrcnn_v2"), help="architecture (default maskrcnn_v1)")
    parser.add_argument("--weights", help="'default' (torchvision COCO, cached download), a local file, or 'none'")
    parser.add_argument("--score-threshold", type=float, help="drop detections scoring below this (0..1)")
    parser.add_argument("--classes", help="comma-separated COCO class names to keep, e.g. person,car")
    parser.add_argument("--size", type=int, help="shorter image side fed to the model (default 800)")
    parser.add_argument("--batch-size", type=int, help="frames per model call for files")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--no-show", action="store_true", help="do not open a window")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    return parser


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults < --config file < flags, validated together."""
    config = load_config(args.config)
    model: dict[str, Any] = {
        "device": args.device, "precision": args.precision, "name": args.model, "weights": args.weights,
        "score_threshold": args.score_threshold, "size": args.size, "batch_size": args.batch_size,
        "classes": [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes is not None else None,
    }
    overrides: dict[str, dict[str, Any]] = {
        "model": model,
        "pipeline": {"max_frames": args.max_frames},
        "output": {"show": False if args.no_show else None, "overwrite": True if args.overwrite else None},
    }
    given = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
    return apply_overrides(config, given, "command line")


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rtseg: %(levelname)s: %(message)s" if not debug
                                           else "%(asctime)s %(threadName)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def run(args: argparse.Namespace) -> int:
    """Build every part (failing early on bad input), run the pipeline, print the summary."""
    from rtseg.capture import open_source
    from rtseg.inference import MaskRCNNDetector
    from rtseg.pipeline import Pipeline
    from rtseg.sinks import Mp4Sink, WindowDisplay, check_output_path

    config = config_from_args(args)
    output = check_output_path(args.output, args.source, config.output.overwrite) if args.output else None
    source = open_source(args.source)
    try:
        detector = MaskRCNNDetector(config.model)
        sinks = [Mp4Sink(output, config.output, audio_source=args.source if source.info.is_file else None)] if output else []
        display = WindowDisplay(f"rtseg - {Path(args.source).name}") if config.output.show else None
        if not sinks and (display is None or not display.available):
            log.warning("no output: nothing is written or shown (pass --output FILE)")
        pipeline = Pipeline(source, detector, config, sinks, display, progress=sys.stderr.isatty())
    except BaseException:
        source.close()
        raise
    summary = pipeline.run()
    for line in summary.lines():
        print(line)
    if output is not None and summary.frames_written:
        print(f"wrote {output}")
    if summary.error is not None:
        raise summary.error
    if summary.stop_reason == "interrupted":
        log.warning("interrupted: stopped after %d frames", summary.frames_written)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    _setup_logging(debug)
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except RtsegError as exc:
        if debug:
            traceback.print_exc()
        print(f"rtseg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rtseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            traceback.print_exc()
        print(f"rtseg: error: unexpected {exc.__class__.__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
