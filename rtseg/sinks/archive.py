"""Outputs that are safe to redo: written under a temporary name, renamed when complete, listed in a manifest.

An archive run (a folder of videos) or a cluster worker may stop anywhere: Ctrl-C,
a crash, a killed machine, a retried task. A file under its final name is
therefore always complete: outputs are written as ``.NAME.partial`` beside their
final name and renamed (atomically, same directory) only when their stream ended
normally. What was processed before a fault stays playable under the temporary
name until a rerun redoes it. The manifest is JSON Lines, one object per finished
input, appended and flushed as each one finishes, so a reader can tail it and a
crash leaves only whole lines.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from rtseg.core.errors import OutputError

MANIFEST_NAME = "rtseg-manifest.jsonl"
PARTIAL_SUFFIX = ".partial"


def partial_path(final: Path) -> Path:
    """Where an output is written until it is complete: a hidden name beside the final one."""
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def commit_outputs(finals: Iterable[Path]) -> None:
    """Rename each complete output from its temporary name to its final name."""
    for final in finals:
        partial = partial_path(final)
        if partial.exists():
            os.replace(partial, final)


def check_archive_directory(directory: Path, inputs: Sequence[Path]) -> None:
    """An archive's outputs go to a directory that exists (or can be made) and is not the inputs' own."""
    if directory.exists() and not directory.is_dir():
        raise OutputError(f"for an archive of videos --output must be a directory: {directory}")
    parent = directory.parent if str(directory.parent) else Path(".")
    if not directory.exists() and not parent.is_dir():
        raise OutputError(f"output directory's parent does not exist: {parent}")
    if directory.exists() and any(p.parent.resolve() == directory.resolve() for p in inputs):
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
