"""The ``Sink`` protocol every output implements, and the checks every output path passes before any work."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from rtseg.core.errors import OutputError
from rtseg.core.media import MP4_SUFFIXES
from rtseg.core.structures import Frame


class Sink(Protocol):
    def write(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


def check_output_path(output: str | Path, source: str | Path | None, overwrite: bool,
                      suffixes: tuple[str, ...] = MP4_SUFFIXES) -> Path:
    """Refuse outputs that would destroy data or fail late: existing files, the input itself, missing dirs."""
    path = Path(output)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"output must end in {' or '.join(suffixes)}: {path}")
    if source is not None and path.resolve() == Path(source).resolve():
        raise OutputError(f"output {path} is the input file; choose another name")
    if path.is_dir():
        raise OutputError(f"output is a directory: {path}")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory is not writable: {parent}")
    return path
