"""Reading a run's JSON Lines as a stream and writing exports under their final name only once complete.

Shared by every export and import (:mod:`rtseg.offline.exports`, :mod:`rtseg.offline.import_labels`) and by
the mask-tracking evaluation, so all of them skip a broken line the same way, refuse the same outputs, and
never leave a half-written file where a labelling tool or benchmark server would take it for a whole one.

Rules:
  - a run is read line by line; a line that is not a complete frame record (a run cut off mid-line, say)
    is skipped and counted, and the export says how many were skipped (:meth:`RunReader.skipped_line`)
  - an export is written under a temporary name beside the output and renamed onto it (``os.replace``)
    only when complete; a failure removes the temporary file or folder
  - masks a track holds across frames are spilled to an SQLite file while reading (:class:`TrackStore`),
    so formats grouped by track (YouTube-VIS, CVAT) never hold a multi-hour run in memory
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from rtseg.core.errors import DataError, OutputError
from rtseg.core.media import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

_FRAME_KEYS = ("frame", "width", "height", "instances")
_INSTANCE_KEYS = ("track_id", "class_id", "class_name", "score", "mask")


def _is_record(record: Any) -> bool:
    """A frame record as ``rtseg --save-json`` writes it (rtseg.sinks.data.frame_record)."""
    if not isinstance(record, dict) or any(key not in record for key in _FRAME_KEYS):
        return False
    if not isinstance(record["frame"], int) or not isinstance(record["instances"], list):
        return False
    for inst in record["instances"]:
        if not isinstance(inst, dict) or any(key not in inst for key in _INSTANCE_KEYS):
            return False
        mask = inst["mask"]
        if not isinstance(mask, dict) or not isinstance(mask.get("counts"), str) or len(mask.get("size", ())) != 2:
            return False
    return True


class RunReader:
    """The frame records of a run's JSON Lines, one at a time; malformed lines are skipped and counted.

    Iterate it once per pass; each pass counts its skipped lines afresh.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"run not found: {self.path}")
        self.skipped = 0
        self.first_skipped: int | None = None
        self.records = 0
        self.width = self.height = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped, self.first_skipped, self.records = 0, None, 0
        try:
            with self.path.open("rb") as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        record = None
                    if not _is_record(record):
                        self.skipped += 1
                        self.first_skipped = self.first_skipped or number
                        continue
                    self.records += 1
                    self.width, self.height = int(record["width"]), int(record["height"])
                    yield record
        except OSError as exc:
            raise DataError(f"cannot read run {self.path}: {exc}") from exc
        if not self.records:
            raise DataError(f"{self.path} holds no frame record of rtseg --save-json"
                            + (f" ({self.skipped} malformed lines)" if self.skipped else ""))

    def skipped_line(self) -> str | None:
        """One line saying how many lines the last pass skipped, or None when it skipped none."""
        if not self.skipped:
            return None
        return (f"skipped {self.skipped} incomplete or malformed line(s) of {self.path} (the first is line "
                f"{self.first_skipped}); every complete line was exported")


def check_output(path: Path, overwrite: bool) -> None:
    """One line (OutputError) if ``path`` cannot be written: its folder is missing, or it exists and may not be
    replaced."""
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists (pass --overwrite to replace it)")


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write a file or folder at; renamed onto ``path`` when the block ends
    without an error, removed when it raises. Nothing appears under the final name before the export is whole."""
    final = Path(path)
    check_output(final, overwrite)
    temporary = final.with_name(f".{final.name}.partial-{os.getpid()}")
    _remove(temporary)
    try:
        yield temporary
    except BaseException:
        _remove(temporary)
        raise
    if final.is_dir() and not final.is_symlink():  # os.replace cannot put a folder over a non-empty one
        aside = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, aside)
        os.replace(temporary, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(temporary, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


class TrackStore:
    """Every tracked mask of a run, by track then frame, in an SQLite file: what a track-grouped format needs
    without holding the run in memory."""

    def __init__(self, directory: Path) -> None:
        self._db = sqlite3.connect(str(directory / "tracks.sqlite"))
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE masks (track INTEGER, frame INTEGER, counts TEXT)")

    def add(self, rows: list[tuple[int, int, str]]) -> None:
        """(track id, frame, COCO RLE counts) of one frame's tracked masks."""
        self._db.executemany("INSERT INTO masks VALUES (?, ?, ?)", rows)

    def tracks(self) -> Iterator[tuple[int, list[tuple[int, str]]]]:
        """(track id, [(frame, counts), ...] in frame order) for every track, by ascending id."""
        self._db.execute("CREATE INDEX by_track ON masks (track, frame)")
        current: int | None = None
        frames: list[tuple[int, str]] = []
        for track, frame, counts in self._db.execute("SELECT track, frame, counts FROM masks ORDER BY track, frame"):
            if track != current and current is not None:
                yield current, frames
                frames = []
            current = track
            frames.append((frame, counts))
        if current is not None:
            yield current, frames

    def close(self) -> None:
        self._db.close()


class FrameSource:
    """The RGB frames of a run, by frame index: from the video it was made of (decoded once, in order) or a
    folder of images (a record's ``image`` name, else the folder's images in name order)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"frames not found: {self.path} (give the video the run was made of, or a folder of "
                            "its frames)")
        self._images = (sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                        if self.path.is_dir() else None)
        self._decoded: Iterator[np.ndarray] | None = None
        self._next = 0

    def _video(self) -> Iterator[np.ndarray]:
        try:
            with av.open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise DataError(f"cannot read video {self.path}: {exc}") from exc

    def frame(self, index: int, width: int, height: int, name: str | None = None) -> np.ndarray:
        """Frame ``index`` (indices must rise from call to call for a video); a DataError line when it is missing
        or its size is not the run's ``width`` x ``height``."""
        if self._images is not None:
            path = self.path / name if name else (self._images[index] if index < len(self._images) else None)
            image = cv2.imread(str(path)) if path is not None else None
            if image is None:
                raise DataError(f"no frame {index} in {self.path}" + (f" ({name})" if name else ""))
            rgb: np.ndarray = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        else:
            if self._decoded is None or index < self._next:
                self._decoded, self._next = self._video(), 0
            rgb = np.zeros(0)
            while self._next <= index:
                decoded = next(self._decoded, None)
                if decoded is None:
                    raise DataError(f"{self.path} ends after {self._next} frames; the run has frame {index}")
                rgb, self._next = decoded, self._next + 1
        if rgb.shape[:2] != (height, width):
            raise DataError(f"frame {index} of {self.path} is {rgb.shape[1]}x{rgb.shape[0]}, the run's frames are "
                            f"{width}x{height}")
        return rgb

