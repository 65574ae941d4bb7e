"""Counts for the end-of-run summary and ``--save-stats``: instances and unique tracks per class."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

from rtseg.core.structures import Detections, Frame


class StatsCollector:
    """Counts for the end-of-run summary: instances per class and unique tracks per class."""

    def __init__(self) -> None:
        self.frames = 0
        self.instances: Counter[str] = Counter()
        self._tracks: defaultdict[str, set[Hashable]] = defaultdict(set)  # track ids, unique within one stream

    def write(self, frame: Frame) -> None:
        self.frames += 1
        detections: Detections | None = frame.detections
        if detections is None:
            return
        for name, track_id in zip(detections.names(), detections.track_ids):
            self.instances[name] += 1
            if track_id >= 0:
                self._tracks[name].add(int(track_id))

    def close(self) -> None:
        """Counts live in memory; ``as_dict`` reads them."""

    @classmethod
    def merged(cls, collectors: Iterable[StatsCollector]) -> StatsCollector:
        """The counts of several streams together; track ids are only unique within their own stream."""
        total = cls()
        for index, collector in enumerate(collectors):
            total.frames += collector.frames
            total.instances.update(collector.instances)
            for name, ids in collector._tracks.items():
                total._tracks[name].update((index, track) for track in ids)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "instances_per_class": dict(sorted(self.instances.items())),
            "tracks_per_class": {name: len(ids) for name, ids in sorted(self._tracks.items())},
        }

    def lines(self) -> list[str]:
        if not self.instances:
            return ["objects: none detected"]
        tracks = self.as_dict()["tracks_per_class"]
        parts = [f"{name} {count}" + (f" ({tracks[name]} tracks)" if name in tracks else "")
                 for name, count in sorted(self.instances.items(), key=lambda item: -item[1])]
        return ["objects: " + ", ".join(parts)]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")
