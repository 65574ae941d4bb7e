"""Outputs that are safe to redo: written under a temporary name, renamed when complete, listed in a manifest.

An archive run (a folder of videos) or a cluster worker may stop anywhere: Ctrl-C,
a crash, a killed machine, a retried task. A file under its final name is
therefore always complete: outputs are written inside ``.NAME.partial/`` beside
their final name (``StagedOutput``) and renamed (atomically, same directory) only
when their stream ended normally. What was processed before a fault stays playable under the temporary
name until a rerun redoes it. The manifest is JSON Lines, one object per finished
input, appended and flushed as each one finishes, so a reader can tail it and a
crash leaves only whole lines.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rtseg.core.errors import OutputError
from rtseg.sinks.base import same_file

MANIFEST_NAME = "rtseg-manifest.jsonl"
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class StagedOutput:
    """One output written away from its final name until its stream completes: the one layout every run uses.

    Attempt N of ``DIR/NAME`` writes ``DIR/.NAME.partial/N/NAME`` (same directory, so the rename is atomic; a
    directory per attempt, so a retry on another worker never meets a half file of an earlier one).
    """

    final: Path
    attempt: int = 1

    @property
    def directory(self) -> Path:
        return self.final.with_name(f".{self.final.name}{PARTIAL_SUFFIX}")

    @property
    def path(self) -> Path:
        """Where this attempt writes."""
        return self.directory / str(self.attempt) / self.final.name

    def prepare(self) -> None:
        """Clear what earlier attempts left (a file of an older layout too) and make this attempt's folder.

        A later attempt's folder is left alone: an attempt the driver gave up on may start after its retry did.
        """
        try:
            if self.directory.is_symlink() or self.directory.is_file():
                self.directory.unlink()
            for folder in self.directory.iterdir() if self.directory.is_dir() else ():
                if not (folder.name.isdigit() and int(folder.name) > self.attempt):
                    _remove(folder)
            self.path.parent.mkdir(parents=True)
        except OSError as exc:
            raise OutputError(f"cannot prepare {self.directory} for {self.final.name}: {exc.strerror or exc}") from exc

    def commit(self) -> None:
        """Move the complete output to its final name (a sink that got no frame wrote none), then drop the folder:
        what any other attempt of this file is writing is no longer needed."""
        if self.path.exists():
            os.replace(self.path, self.final)
        shutil.rmtree(self.directory, ignore_errors=True)

    def discard_if_empty(self) -> None:
        """An attempt that wrote nothing leaves nothing behind; what it did write stays until a rerun redoes it.

        Only this attempt's folder goes: another attempt of the same file (the retry of one the driver gave up
        on while it still ran) keeps what it is writing.
        """
        if not self.path.exists():
            shutil.rmtree(self.path.parent, ignore_errors=True)
            try:
                self.directory.rmdir()
            except OSError:
                pass  # another attempt's folder is still in it, or it is gone already


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def nothing_to_do(skipped: int) -> str:
    """The one line both archive paths (one machine, ``--cluster``) print when a rerun finds every video finished."""
    return (f"nothing to do: all {skipped} archive video(s) are finished already "
            "(--overwrite redoes them; a video cut by --max-frames is not finished)")


def check_archive_directory(directory: Path, inputs: Sequence[Path]) -> None:
    """An archive's outputs go to a directory that exists (or can be made) and is not the inputs' own."""
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"for an archive of videos --output must be a directory: {directory}")
    parent = directory.parent if str(directory.parent) else Path(".")
    if not directory.exists() and not parent.is_dir():
        raise OutputError(f"output directory's parent does not exist: {parent}")
    if directory.exists() and any(same_file(p.parent, directory) for p in inputs):
        raise OutputError(f"output directory {directory} holds the input videos; choose another")


class Manifest:
    """The JSON Lines record of an archive: one line per input as it finishes (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({**record, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, separators=(",", ":"))
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Every whole line of a manifest (a line cut short by a crash is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
