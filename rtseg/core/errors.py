"""The project's own exceptions: each carries one line a user can act on.

The CLI turns ``UsageError`` subclasses into exit code 2 and ``RuntimeFailure``
subclasses into exit code 1, printing only the message (tracebacks with --debug).
"""

from __future__ import annotations


class RtsegError(Exception):
    """Base class: ``str(error)`` is the one line shown to the user."""

    exit_code = 1


class UsageError(RtsegError):
    """Bad command line, configuration or input detected before any work starts."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file or value is invalid."""


class SourceError(UsageError):
    """The source cannot be opened or holds no video."""


class OutputError(UsageError):
    """The output cannot be written (exists, equals the input, directory missing)."""


class WeightsError(UsageError):
    """Model weights are missing, unreadable, or for another architecture."""


class DeviceError(UsageError):
    """The requested device or precision is not available."""


class DataError(UsageError):
    """A data set (COCO annotation file, image folder, predictions) is missing or malformed."""


class NothingToDo(RtsegError):
    """Every archive video is finished already: not a failure (exit 0), since a rerun of a finished archive is the
    normal way to check it, and scripts that rerun until done must not see an error."""

    exit_code = 0


class RuntimeFailure(RtsegError):
    """A stage failed while the pipeline was running."""

    exit_code = 1


class StageError(RuntimeFailure):
    """A pipeline stage raised or hung; names the stage and the cause."""

    def __init__(self, stage: str, cause: str) -> None:
        super().__init__(f"{stage} stage failed: {cause}")
        self.stage = stage
        self.cause = cause


class TerminationRequest(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt by the CLI so that it finishes the run like Ctrl-C does."""
