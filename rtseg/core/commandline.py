"""The one home for command-line pieces that ``rtseg``, ``rtseg serve``, ``rtseg train``/``evaluate`` and the
cluster's workers share: the parser, the model flags, flags to settings, and logging.

Choices come from the config's metadata, so every command accepts the same
values as the configuration file does; every usage error is a ``UsageError``,
so every command prints it as one line and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rtseg.core.config import ModelConfig, excerpt, setting_choices
from rtseg.core.errors import RtsegError, UsageError
from rtseg.core.redaction import CredentialFilter, mask_credentials

PRECISIONS: tuple[str, ...] = setting_choices(ModelConfig, "precision")
ARCHITECTURES: tuple[str, ...] = setting_choices(ModelConfig, "name")
PRECISION_HELP = ("compute precision: auto = fp16 on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16 or AMX), "
                  "else fp32; bf16 (inference only) changes masks slightly")
WEIGHTS_HELP = "'default' (torchvision COCO, cached download), a local file, or 'none' (random weights)"


def finite_float(text: str) -> float:
    """A number flag's value: ``float`` without ``nan`` and ``inf``, which pass every range check (each comparison
    with NaN is False) and mean no setting's value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is not a finite number")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting, so every usage error looks alike, and whose
    ``type=float`` flags refuse ``nan`` and ``inf`` (``finite_float``): every command built on it does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("type", float, finite_float)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_device_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = "auto",
                     precision_help: str = PRECISION_HELP) -> None:
    """--device and --precision; ``default`` None leaves both to the configuration (rtseg, rtseg serve);
    ``precision_help`` for a command whose ``auto`` differs (training has no bf16)."""
    parser.add_argument("--device", default=default, help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--precision", default=default, choices=PRECISIONS, help=precision_help)


def add_model_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                    score_help: str = "drop detections scoring below this (0..1)") -> None:
    """The model's flags as ``rtseg`` and ``rtseg serve`` take them; ``model_overrides`` reads them back."""
    add_device_flags(parser, default=None)
    parser.add_argument("--model", choices=ARCHITECTURES, help="architecture (default maskrcnn_v1)")
    parser.add_argument("--weights", help=WEIGHTS_HELP)
    parser.add_argument("--size", type=int, help="shorter image side fed to the model (default: a fine-tuned "
                                                 "checkpoint's training size, else 800)")
    parser.add_argument("--score-threshold", type=float, help=score_help)


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``model`` settings the flags of ``add_model_flags`` gave (those left out are not in it)."""
    given = {"device": args.device, "precision": args.precision, "name": args.model, "weights": args.weights,
             "size": args.size, "score_threshold": args.score_threshold}
    return {key: value for key, value in given.items() if value is not None}


def run_command(main: Callable[[list[str]], int], argv: Sequence[str]) -> int:
    """A subcommand's ``main`` run on its own (``python -m rtseg.offline.train``): an expected failure is one line
    on stderr and its exit code, as ``rtseg train`` prints it."""
    setup_logging()
    try:
        return main(list(argv))
    except RtsegError as exc:
        print(mask_credentials(f"rtseg: error: {exc}"), file=sys.stderr)
        return exc.exit_code


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes, not the stream it was when logging was set up: a
    caller (a test's capture, a notebook) that swaps stderr and later closes its own never leaves the root logger
    writing into a closed file, losing every later line."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """The stream is always the current stderr; what StreamHandler sets is ignored."""


def setup_logging(debug: bool = False) -> None:
    """Log lines on stderr as ``rtseg: LEVEL: message`` (with --debug: time, thread, logger), credentials masked."""
    handler = _CurrentStderr()
    handler.addFilter(CredentialFilter())
    handler.setFormatter(logging.Formatter("rtseg: %(levelname)s: %(message)s" if not debug
                                           else "%(asctime)s %(threadName)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
