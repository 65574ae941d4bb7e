"""Command line: parse flags, check everything that can be checked before starting, run, report.

Every expected failure is one line on stderr and a documented exit code:
0 success (also when the user closes the window), 1 a failure while running,
2 a usage, configuration or input error found before any work (a stream that
cannot be opened included), 130 Ctrl-C, 143 SIGTERM (both finish the output
file first). Tracebacks are shown only with --debug. Passwords in stream URLs
are masked in everything the CLI prints or logs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtseg.core.commandline import ArgumentParser, add_model_flags, model_overrides, setup_logging
from rtseg.core.config import Config, apply_overrides, load_config
from rtseg.core.errors import NothingToDo, OutputError, RtsegError, TerminationRequest, UsageError
from rtseg.core.redaction import mask_credentials
from rtseg.core.regions import parse_line, parse_zone

if TYPE_CHECKING:
    from rtseg.pipeline.planner import Outputs

log = logging.getLogger("rtseg")

SUBCOMMANDS = {"train": "rtseg.offline.train", "evaluate": "rtseg.offline.evaluate",  # rtseg train|evaluate --help
               "serve": "rtseg.web.serve",  # rtseg serve --help: the browser page
               "export": "rtseg.offline.exports", "import": "rtseg.offline.import_labels",  # MOTS, YouTube-VIS, CVAT, COCO
               "evaluate-tracks": "rtseg.offline.eval_masks",  # HOTA, MOTSA, IDF1 against MOTS / YouTube-VIS
               "classes": "rtseg.detect.classes"}  # the class names --classes takes
_EXIT_CODES = {"interrupted": 130, "terminated": 143}  # 128 + SIGINT / SIGTERM, as shells report them
EXIT_PARTIAL = 3  # some streams failed while others finished

EXAMPLES = """\
examples:
  rtseg --source samples/car.mp4 --output car-seg.mp4    the sample clip (offline: add --weights none)
  rtseg --source clip.mp4 --output clip-seg.mp4          segment a file into an annotated MP4
  rtseg --source clip.mp4 --output out.mp4 --no-show --classes person,car --score-threshold 0.6
  rtseg --source clip.mp4 --output out.mp4 --weights model.pt      use a local weights file
  rtseg --source clip.mp4 --output out.mp4 --weights none --size 320 --max-frames 50   plumbing check, random weights
  rtseg --source clip.mp4 --config configs/default.yaml --device cuda --precision fp16
  rtseg --source photo.jpg --output annotated/ --save-json photo.jsonl --save-crops crops/
  rtseg --source 'frames/*.jpg' --output annotated/ --no-show
  rtseg --source 0 --output webcam.mp4                     the first webcam, live, recorded at real speed
  rtseg --source rtsp://user:pass@192.168.1.10/stream1 --output cam.mp4 --read-timeout 5
  rtseg --source clip.mp4 --realtime                       play a file at its own pace, as a live camera
  rtseg --source clip.mp4 --output out.mp4 --line gate=0,0.5,1,0.5:person --events events.jsonl
                                                           count people crossing the middle, per direction
  rtseg --source 0 --zone bay=0.5,0.4,1,0.4,1,1,0.5,1 --mqtt mqtt://127.0.0.1 --heatmap heat.png

subcommands: rtseg classes (the class names --classes takes; --weights FILE for a checkpoint's),
             rtseg train --help (fine-tune on COCO-format data), rtseg evaluate --help (COCO AP, precision/recall),
             rtseg serve --help (the browser page: images, videos, the webcam),
             rtseg export --help (a run as MOTS, YouTube-VIS, CVAT video, COCO), rtseg import --help (CVAT/MOTS to COCO),
             rtseg evaluate-tracks --help (HOTA, MOTSA, IDF1 of a run against MOTS / YouTube-VIS ground truth)

  rtseg --source rtsp://cam1/s --source rtsp://cam2/s --output recordings/   two cameras, one model, a mosaic
  rtseg --source archive/ --output out/ --no-show          every video of a folder; rerun to finish what was cut off
  rtseg --config fleet.yaml                                the streams: list of a config file
  rtseg --source archive/ --output out/ --cluster auto     an archive over Ray workers on this machine (docs/cluster.md)
  rtseg --config cameras.yaml --output rec/ --cluster 10.0.0.5:6379   a streams: list of cameras over a running Ray cluster

exit codes: 0 done, 1 failed while running, 2 bad usage/config/input, 3 some streams failed (the others finished),
            130 Ctrl-C, 143 SIGTERM
"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="rtseg",
        description="Real-time Mask R-CNN instance segmentation for video files, webcams, IP cameras and images.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", action="append",
                        help="video file (animated GIF too), webcam (0, 1, ... or /dev/videoN), stream URL "
                             "(rtsp://, rtsps://, rtmp://, http(s):// MJPEG or HLS, udp://, tcp://), still image, "
                             "directory of images, or quoted glob; a directory or glob of videos is an archive "
                             "(one stream per video). Give it several times for several streams on one model; "
                             "without it, the config file's streams: list runs")
    parser.add_argument("--output", help="annotated MP4 for videos and streams (keeps every frame, its timestamps "
                                         "and the audio); a directory for still images (same file names); with "
                                         "several streams or an archive, a directory with one MP4 per stream")
    parser.add_argument("--save-json", metavar="PATH.jsonl", help="detections as JSON Lines, one frame per line, "
                                                                   "masks as COCO RLE")
    parser.add_argument("--save-frames", metavar="DIR", help="annotated frames as images (every Nth: --save-every)")
    parser.add_argument("--save-every", type=int, metavar="N", help="with --save-frames, keep every Nth frame")
    parser.add_argument("--save-crops", metavar="DIR", help="each object cut out as a transparent PNG")
    parser.add_argument("--save-stats", metavar="PATH.json", help="objects and tracks per class as JSON")
    parser.add_argument("--zone", action="append", metavar="NAME=x,y,x,y,x,y[:classes]",
                        help="a zone decided by the objects' masks: corners in pixels or 0..1 of the frame, e.g. "
                             "door=0.1,0.2,0.4,0.2,0.4,0.9:person; give it once per zone (docs/analytics.md)")
    parser.add_argument("--line", action="append", metavar="NAME=x,y,x,y[:left|right][:classes]",
                        help="a line whose crossings are counted per class and direction, e.g. gate=0,0.5,1,0.5; "
                             "'in' is the side on the left of its points' direction unless :right")
    parser.add_argument("--events", metavar="PATH.jsonl", help="zone and line events as JSON Lines, one per line")
    parser.add_argument("--heatmap", metavar="PATH.png", help="where objects were over the run, from their masks")
    parser.add_argument("--mqtt", metavar="URL", help="publish events to an MQTT broker: mqtt://[user:pass@]host[:port] "
                                                      "(pip install -e \".[events]\")")
    parser.add_argument("--webhook", metavar="URL", help="POST each event as JSON to this URL")
    parser.add_argument("--config", help="YAML file overriding configs/default.yaml; flags override both")
    add_model_flags(parser)
    parser.add_argument("--classes", help="comma-separated class names to keep, e.g. person,car ('rtseg classes' lists "
                                          "them; a checkpoint's own with --weights FILE)")
    parser.add_argument("--batch-size", type=int, help="frames per model call for files")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--realtime", action="store_true",
                        help="play a file at its own pace as a live source would, dropping frames the model cannot keep up with")
    parser.add_argument("--read-timeout", type=float, metavar="SECONDS",
                        help="live sources: seconds without a frame before reconnecting (default 5)")
    parser.add_argument("--reconnect-attempts", type=int, metavar="N",
                        help="live sources: reconnect attempts per disconnect before failing (default 0 = unlimited)")
    parser.add_argument("--no-track", action="store_true", help="no tracking: no ids, colours by detection order")
    parser.add_argument("--color-by", choices=("track", "class", "index"), help="what a colour follows (default track)")
    parser.add_argument("--no-show", action="store_true", help="do not open a window")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--cluster", metavar="auto|ADDRESS",
                        help="run on Ray (pip install -e \".[cluster]\"): auto starts a local Ray instance on "
                             "127.0.0.1, ADDRESS joins a running cluster (ray start --head); an archive is spread one "
                             "file per task over the workers, a streams: list of cameras over them (docs/cluster.md)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    parser.add_argument("--version", action="store_true", help="print rtseg's version (and torch's) and exit")
    return parser


def version_line() -> str:
    """rtseg's version with torch's and torchvision's, read from the installed packages' metadata (no torch import:
    it answers at once)."""
    from importlib import metadata

    from rtseg import __version__

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (f"rtseg {__version__} (torch {installed('torch')}, torchvision {installed('torchvision')}, "
            f"Python {sys.version.split()[0]})")


def _check_conflicts(args: argparse.Namespace) -> None:
    """Flags that contradict each other are a usage error, not a silent choice."""
    if args.save_every is not None and args.save_frames is None:
        raise UsageError("--save-every needs --save-frames DIR")
    if args.no_track and args.color_by == "track":
        raise UsageError("--color-by track needs tracking; drop --no-track or colour by class or index")


def config_from_args(args: argparse.Namespace) -> Config:
    """Defaults < --config file < flags, validated together."""
    _check_conflicts(args)
    config = load_config(args.config)
    model: dict[str, Any] = {
        **model_overrides(args), "batch_size": args.batch_size,
        "classes": [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes is not None else None,
    }
    overrides: dict[str, dict[str, Any]] = {
        "model": model,
        "pipeline": {"max_frames": args.max_frames},
        "live": {"read_timeout": args.read_timeout, "reconnect_attempts": args.reconnect_attempts},
        "tracking": {"enabled": False if args.no_track else None},
        "render": {"color_by": args.color_by},
        "analytics": {"zones": None if args.zone is None else [parse_zone(text).as_dict() for text in args.zone],
                      "lines": None if args.line is None else [parse_line(text).as_dict() for text in args.line]},
        "events": {"mqtt": args.mqtt, "webhook": args.webhook},
        "output": {"show": False if args.no_show else None, "overwrite": True if args.overwrite else None,
                   "frames_every": args.save_every},
    }
    given = {section: {k: v for k, v in values.items() if v is not None} for section, values in overrides.items()}
    return apply_overrides(config, given, "command line")


def run(args: argparse.Namespace) -> int:
    """Check everything that can be checked, run the pipeline through the API, print the summary.

    The settings are checked before the API (and with it torch) is imported: a mistake there is one line at once.
    """
    config = config_from_args(args)
    if not args.source and not config.streams:
        raise UsageError(f"no source: give --source with a video, image, folder, camera or URL, e.g. rtseg --source "
                         f"{_sample_for_cwd()} --output car-seg.mp4 --weights none (or --config FILE with streams:)")
    from rtseg.api import Outputs, process

    outputs = Outputs(output=args.output, save_json=args.save_json, save_frames=args.save_frames,
                      save_crops=args.save_crops, save_stats=args.save_stats, events=args.events,
                      heatmap=args.heatmap, show=config.output.show)
    _check_config_kept(args.config, outputs)
    if args.cluster:
        from rtseg.cluster.front import run_cluster

        outcome = run_cluster(args.cluster, args.source or [], outputs, config, progress=sys.stderr.isatty())
        for line in outcome.lines():
            print(mask_credentials(line))
        return {"done": 0, "partial": EXIT_PARTIAL, "failed": 1, **_EXIT_CODES}[outcome.state]
    result = process(args.source or [], outputs, config=config, realtime=args.realtime, progress=sys.stderr.isatty())
    summary = result.summary
    for line in [*summary.lines(), *result.stats.lines()]:
        print(mask_credentials(line))
    written = [p for p in (args.output, args.save_json, args.save_frames, args.save_crops, args.save_stats,
                           args.events, args.heatmap) if p]
    if written and summary.frames_written:
        print("wrote " + ", ".join(written))
    if summary.error is not None:
        raise summary.error
    if summary.stop_reason in _EXIT_CODES:
        log.warning("%s: stopped after %d frames", summary.stop_reason, summary.frames_written)
        return _EXIT_CODES[summary.stop_reason]
    failed = summary.failed_streams
    if failed:
        for stream in failed:
            print(mask_credentials(f"rtseg: error: stream {stream.name}: {stream.error}"), file=sys.stderr)
        return EXIT_PARTIAL
    return 0


def _check_config_kept(config_file: str | None, outputs: Outputs) -> None:
    """The --config file is an input too: no output may replace it (compared as files: a hard link to it is it).
    The planner compares the outputs with the sources and with each other."""
    from rtseg.sinks.base import same_file  # imported with the pipeline (torch), after the settings were checked

    if config_file is None:
        return
    for option, path in outputs.named():
        if same_file(path, config_file):
            raise OutputError(f"{option} {path} is the --config file; choose another name")


def _sample_for_cwd() -> str:
    """The sample clip as a path the user can paste here: relative to the current folder when it is below it."""
    from rtseg.core.media import SAMPLE_CLIP

    try:
        return str(SAMPLE_CLIP.relative_to(Path.cwd()))
    except ValueError:
        return str(SAMPLE_CLIP)


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """Let SIGTERM (service managers, ``kill``) and SIGINT finish the run cleanly, as Ctrl-C does.

    SIGINT gets Python's interrupt handler back when a parent left it at the
    default action (which would kill the process mid-write); an ignored SIGINT
    stays ignored.
    """
    def on_sigterm(signum: int, frame: object) -> None:
        raise TerminationRequest()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm)}
    if signal.getsignal(signal.SIGINT) is signal.SIG_DFL:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    setup_logging(debug)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            import importlib

            with _signals_as_interrupts():
                code: int = importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
                return code
        args = build_parser().parse_args(argv)
        if args.version:
            print(version_line())
            return 0
        with _signals_as_interrupts():
            return run(args)
    except NothingToDo as exc:  # a rerun of a finished archive: said in one line, not an error
        print(exc)  # as --cluster prints it: a result line, not a log line
        return exc.exit_code
    except RtsegError as exc:
        if debug:
            print(mask_credentials(traceback.format_exc()), end="", file=sys.stderr)
        print(mask_credentials(f"rtseg: error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        reason = "terminated" if isinstance(exc, TerminationRequest) else "interrupted"
        print(f"rtseg: {reason}", file=sys.stderr)
        return _EXIT_CODES[reason]
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if debug:
            print(mask_credentials(traceback.format_exc()), end="", file=sys.stderr)
        print(mask_credentials(f"rtseg: error: unexpected {exc.__class__.__name__}: {exc} (run with --debug for details)"),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
