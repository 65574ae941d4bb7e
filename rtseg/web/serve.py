"""``rtseg serve``: the browser page on http://127.0.0.1:8000/ over one Mask R-CNN shared by every user.

Needs the ``[web]`` extra (FastAPI, uvicorn); without it one line says what to
install. Binds 127.0.0.1 unless ``--host`` says otherwise, and then warns that
the page, which uploads files and opens webcams, is reachable from the network.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import socket
from collections.abc import Sequence

from rtseg.core.commandline import ArgumentParser, add_model_flags, model_overrides
from rtseg.core.config import Config, apply_overrides, excerpt, load_config
from rtseg.core.errors import UsageError
from rtseg.pipeline.planner import detector_settings
from rtseg.web.sharing import MIN_SCORE

log = logging.getLogger("rtseg")

INSTALL_HINT = 'the web page needs its extra: pip install -e ".[web]" (FastAPI, uvicorn, websockets)'
_WEB_PACKAGES = ("fastapi", "starlette", "uvicorn", "websockets")
_WILDCARDS = ("0.0.0.0", "::")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="rtseg serve", description="Serve the browser page: images, videos and the "
                                                              "webcam through one shared model.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; anything else exposes "
                             "the page to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a further host name the page may be opened as (repeatable; needed with --host "
                             "0.0.0.0 for the names clients use)")
    parser.add_argument("--config", help="YAML file overriding configs/default.yaml; flags override both")
    add_model_flags(parser, score_help="the slider's starting value (default 0.5)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload accepted (default 200)")
    parser.add_argument("--queue-size", type=int, default=4,
                        help="image requests, video jobs and webcams admitted at once; more get 503 (default 4)")
    parser.add_argument("--keep-minutes", type=float, default=30.0,
                        help="results are deleted this long after their last use, and all at shutdown (default 30)")
    parser.add_argument("--max-pixels", type=int,
                        help="largest image, webcam frame or video frame decoded, judged from its header before "
                             "decoding; larger is refused with 413 (default: the config's pipeline.max_pixels, "
                             "40 million)")
    parser.add_argument("--max-side", type=int, default=2048,
                        help="longest side the model sees: the largest 'Max size' an image may ask for, and videos "
                             "may have at most this squared pixels a frame (default 2048); memory grows with its "
                             "square")
    parser.add_argument("--idle-timeout", type=float, default=30.0,
                        help="seconds an upload may send nothing, and a webcam socket stay silent, before it is "
                             "dropped (default 30)")
    parser.add_argument("--upload-timeout", type=float, default=600.0,
                        help="seconds a whole upload may take (default 600)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and full tracebacks")
    return parser


# The values each number flag accepts, both ends included; nan and inf never get here (ArgumentParser refuses them).
FLAG_RANGES: dict[str, tuple[float, float]] = {
    "--port": (0, 65535), "--max-upload-mb": (0.001, 1_000_000), "--queue-size": (1, 256),
    "--keep-minutes": (0.01, 525_600), "--max-side": (32, 16384), "--idle-timeout": (0.1, 3600),
    "--upload-timeout": (1, 86400),
}


def settings_from_args(args: argparse.Namespace) -> tuple[Config, Config]:
    """The page's config (defaults for the slider and video jobs) and the shared model's (keeps every score)."""
    for flag, (low, high) in FLAG_RANGES.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if not low <= value <= high:
            raise UsageError(f"{flag} must be from {low:g} to {high:g}, got {excerpt(value)}")
    pipeline = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    config = apply_overrides(load_config(args.config), {"model": model_overrides(args), "output": {"show": False},
                                                        "pipeline": pipeline}, "command line")
    # The shared model keeps every score the slider can choose, and every class: each request picks its own.
    floor = detector_settings(config, floor=MIN_SCORE)
    shared = dataclasses.replace(config, model=dataclasses.replace(floor, classes=[]))
    return config, shared


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads so that a taken port fails at once with one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the backlog until uvicorn serves them
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    config, shared = settings_from_args(args)
    try:
        import uvicorn
        import websockets  # noqa: F401 - uvicorn needs it for the webcam's WebSocket

        from rtseg.web.app import WebSettings, create_app
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in _WEB_PACKAGES:
            raise UsageError(INSTALL_HINT) from None
        raise
    from rtseg.detect.maskrcnn import MaskRCNNDetector
    from rtseg.web.security import LOOPBACK_NAMES

    sock = listen(args.host, args.port)
    try:
        host_names = {*LOOPBACK_NAMES, *args.allowed_host, *([] if args.host in _WILDCARDS else [args.host])}
        if not is_loopback(args.host):
            log.warning("listening on %s: the page (uploads, the model, webcams) is open to the network; it answers "
                        "to the host names %s", args.host, ", ".join(sorted(host_names)))
        detector = MaskRCNNDetector(shared.model)
        settings = WebSettings(config=config, max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                               queue_size=args.queue_size, keep_seconds=args.keep_minutes * 60,
                               allowed_hosts=tuple(sorted(host_names)), max_side=min(args.max_side, 1024),
                               side_limit=args.max_side, idle_timeout=args.idle_timeout,
                               upload_timeout=args.upload_timeout)
        app = create_app(detector, settings)
        port = sock.getsockname()[1]
        shown = "127.0.0.1" if args.host in _WILDCARDS else f"[{args.host}]" if ":" in args.host else args.host
        print(f"rtseg: serving the page at http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="debug" if args.debug else "warning",
                                               ws_max_size=8 * 2 ** 20))
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
