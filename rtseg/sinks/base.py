"""The ``Sink`` protocol every output implements, and the checks every output path passes before any work.

Inputs and outputs are compared as files, not as names: two paths are the same file when they resolve to the same
name (symbolic links followed) or, both existing, share a device and an inode (hard links, bind mounts, a case-
insensitive file system), as ``os.path.samefile`` decides.
"""

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


def file_keys(path: str | Path) -> list[Path | tuple[int, int]]:
    """What tells a file apart from every other: its resolved path (symbolic links followed) and, when it exists,
    its device and inode (hard links, bind mounts, a case-insensitive file system). Two paths are one file when
    they share a key, as ``os.path.samefile`` decides for paths that exist."""
    resolved = Path(path).resolve()
    try:
        status = resolved.stat()
    except OSError:  # not there (yet): only its name can tell
        return [resolved]
    return [resolved, (status.st_dev, status.st_ino)]


def same_file(a: str | Path, b: str | Path) -> bool:
    return bool(set(file_keys(a)) & set(file_keys(b)))


def check_output_path(output: str | Path, overwrite: bool, suffixes: tuple[str, ...] = MP4_SUFFIXES) -> Path:
    """Refuse outputs that would fail late or replace a file unasked: an existing file, a missing or unwritable
    directory. Whether an output is an input, or another output, the planner decides for all of them at once."""
    path = Path(output)
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"output must end in {' or '.join(suffixes)}: {path}")
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


def check_output_directory(option: str, directory: str | Path) -> Path:
    """Refuse a folder of outputs (``--save-frames``, ``--save-crops``, still images' ``--output``) that could not
    be written: a file in its place or on its way, or no right to write where it is or would be made. Checked
    before the model loads, so that an unwritable folder is one line at once, not a failure after the first frame."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{option} must be a directory, and {path} is a file")
    existing = path
    while not existing.exists():  # the folder is made with its parents: the nearest one that exists decides
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{option} {path} cannot be made: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path} cannot be written: {existing} is not writable")
    return path
