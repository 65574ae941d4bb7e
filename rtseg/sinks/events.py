"""Analytics events as JSON Lines: one line per event, flushed with its frame.

The file follows the rules of every rtseg output that may be read while it is
written: a line is written whole and flushed once its frame is done, so Ctrl-C,
a crash or SIGKILL lose nothing up to the last flushed line, and ``tail -f``
reads whole events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from rtseg.core.structures import Frame
from rtseg.sinks.data import cut_out, make_directory, write_image

SNAPSHOT_KINDS = ("enter", "cross", "loiter")  # the events a person may want to look at; exits and counts are not


class EventsSink:
    """Writes ``frame.events``; frames without events write nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8")
        self.written = 0

    def write(self, frame: Frame) -> None:
        if not frame.events:
            return
        assert self._file is not None
        self._file.write("".join(json.dumps(e.as_dict(), separators=(",", ":")) + "\n" for e in frame.events))
        self._file.flush()
        self.written += len(frame.events)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class SnapshotsSink:
    """For each enter, cross and loiter event: the annotated frame (JPEG) and the object cut out (PNG).

    Files are named ``STREAM-FRAME-KIND-REGION-tTRACK`` so that they sort by time
    and an event's line in the JSON Lines leads to its pictures.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = make_directory(directory)

    def write(self, frame: Frame) -> None:
        detections = frame.detections
        if not frame.events or detections is None:
            return
        for event in frame.events:
            if event.kind not in SNAPSHOT_KINDS or event.track_id < 0:
                continue
            stem = f"{event.stream}-{frame.index:06d}-{event.kind}-{event.region}-t{event.track_id}"
            write_image(self.directory / f"{stem}.jpg", frame.rendered if frame.rendered is not None else frame.image)
            found = [i for i, t in enumerate(detections.track_ids) if t == event.track_id]
            rgba = cut_out(frame, found[0]) if found else None
            if rgba is not None:
                write_image(self.directory / f"{stem}-object.png", rgba)

    def close(self) -> None:
        """Every picture is complete when written; nothing to finalise."""
