"""Scene analytics against ground truth and against the peers' rule: rtseg's masks versus supervision's anchors.

Every scene of :mod:`rtseg.offline.analytics_scenes` is run through three counters
on the very same detections and track ids:

- ``rtseg``: :class:`rtseg.analytics.SceneAnalytics` with the given
  ``AnalyticsConfig`` (mask shares, hysteresis, lost-track re-acquisition);
- ``supervision``: supervision's ``LineZone`` with its default triggering anchors
  (the box's four corners, all of which must be on one side and within the line's
  ends, ``minimum_crossing_threshold`` 1) and ``PolygonZone`` with its default
  anchor (the box's bottom centre);
- ``sv-centre``: the same two with the box's centre as their one anchor, the
  anchor nearest to the truth's definition (whole body's area, body's centre).

supervision's ``PolygonZone`` only says which detections' anchors are inside
this frame. Entries, occupancy and dwell are derived from that per tracker id the
obvious way, kept as generous as rtseg's own rules: a confirmed tracker id
(``>= 0``) enters when its anchor is first inside and exits when it is next seen
outside (the visit lasting from the first frame inside to the first frame
outside); an id not seen keeps its state until it has gone unseen for
``lost_seconds`` (rtseg's setting), when its visit ends at its last sighting.
Occupancy is the number of ids inside in each frame. Crossings are what
``LineZone.trigger`` reports.

Measured per scene and summed (or pooled) per family:

- ``count errors``: over every line, direction and class and every zone and
  class, the absolute difference between the counted and the true number of
  crossings and entries (a crossing counted under a flickered class is two
  errors: one missing, one extra); ``any class`` is the same ignoring classes;
- ``occupancy``: mean absolute error, bodies, per frame and zone;
- ``dwell``: mean absolute error in seconds per true visit, the measured dwell of a
  true visit being the summed length of that body's measured visits to the zone
  that overlap it in time (the body of a track id is known from the simulation);
  a missed visit measures 0 s, a visit split in two measures the sum of its halves.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtseg.analytics import SceneAnalytics
from rtseg.core.config import AnalyticsConfig
from rtseg.offline.analytics_scenes import CLASS_NAMES, FAMILIES, HEIGHT, WIDTH, Scene, SimFrame, Visit, make_scene

TUNING_SEEDS = tuple(range(0, 10))  # AnalyticsConfig settings may be chosen on these, and only these
CHECKING_SEEDS = tuple(range(100, 120))  # the table in docs/analytics.md: never used for choosing anything
PLAIN_FAMILIES = ("plain", "large", "linger")  # a clean detector and tracker: rtseg must count them without error
PEER_FAMILIES = ("occlusion", "large")  # where rtseg must make strictly fewer errors than supervision
TOOLS = ("rtseg", "supervision", "sv-centre")


@dataclass
class Measured:
    """What one counter said about one scene, in the truth's terms."""

    crossings: dict[str, dict[str, Counter[str]]]
    entries: dict[str, Counter[str]]
    occupancy: np.ndarray  # (frames, zones)
    visits: list[Visit] = field(default_factory=list)


class _Owners:
    """Which simulated body each track id belongs to (learnt from the frames, as a labelled video would)."""

    def __init__(self) -> None:
        self.of: dict[int, int] = {}

    def learn(self, frame: SimFrame) -> None:
        for track_id, body in zip(frame.detections.track_ids, frame.bodies):
            if track_id >= 0:
                self.of[int(track_id)] = int(body)


class RtsegCounter:
    """rtseg's ``SceneAnalytics`` fed frame by frame; ``finish`` gives its tally, per-frame occupancy and visits."""

    def __init__(self, scene: Scene, settings: AnalyticsConfig | None = None) -> None:
        self.layout, self.end = scene.layout, float(scene.times[-1])
        self.analytics = SceneAnalytics(self.layout.zones, self.layout.lines, settings, stream=scene.family)
        self.owners = _Owners()
        self.occupancy = np.zeros((len(scene.times), len(self.layout.zones)), np.int64)
        self.last_seen: dict[int, float] = {}
        self.visits: list[Visit] = []

    def update(self, frame: SimFrame) -> None:
        self.owners.learn(frame)
        for track_id in frame.detections.track_ids:
            if track_id >= 0:
                self.last_seen[int(track_id)] = frame.time
        events = self.analytics.update(frame.detections, time=frame.time, frame=frame.index, height=HEIGHT,
                                       width=WIDTH)
        for event in events:
            if event.kind == "exit":
                assert event.dwell is not None
                # The event dates its visit (entered, dwell). A re-acquired track exits under its new id, so the
                # visit is the body's whose track that id is (wrong if rtseg handed a lost track's zones to another
                # body's id: then the dwell error shows it).
                assert event.entered is not None
                self.visits.append(Visit(self.owners.of[event.track_id], event.region, event.entered,
                                         event.entered + event.dwell))
        self.occupancy[frame.index] = [zone.occupancy for zone in self.analytics.state.zones]

    def finish(self) -> Measured:
        tally = self.analytics.tally
        crossings = {name: {way: Counter(counts) for way, counts in ways.items()}
                     for name, ways in tally.crossed.items()}
        entered = {name: Counter(c) for name, c in tally.entered.items()}
        return Measured(crossings, entered, self.occupancy, self.visits)


class SupervisionCounter:
    """supervision's ``LineZone`` and ``PolygonZone`` fed frame by frame (see the module doc).

    ``anchor``: None for each class's default anchors, else a ``supervision.Position`` name (e.g. ``"CENTER"``)
    used as the one anchor of both. ``lost_seconds``: how long an unseen id keeps its zones (rtseg's setting).
    """

    def __init__(self, scene: Scene, anchor: str | None = None, lost_seconds: float | None = None) -> None:
        import supervision as sv

        self.sv = sv
        self.layout, self.end = scene.layout, float(scene.times[-1])
        self.lost = AnalyticsConfig().lost_seconds if lost_seconds is None else lost_seconds
        anchors: dict[str, Any] = {} if anchor is None else {"triggering_anchors": (sv.Position[anchor],)}
        self.line_zones = []
        for line in self.layout.lines:
            points = line.pixels(HEIGHT, WIDTH)
            if len(points) != 2:
                raise ValueError(f"line {line.name!r}: supervision's LineZone takes two points, not {len(points)}")
            self.line_zones.append(sv.LineZone(start=sv.Point(float(points[0][0]), float(points[0][1])),
                                               end=sv.Point(float(points[1][0]), float(points[1][1])), **anchors))
        self.polygon_zones = [sv.PolygonZone(polygon=np.round(zone.pixels(HEIGHT, WIDTH)).astype(np.int64), **anchors)
                              for zone in self.layout.zones]
        self.crossings = {ln.name: {"in": Counter[str](), "out": Counter[str]()} for ln in self.layout.lines}
        self.entries = {z.name: Counter[str]() for z in self.layout.zones}
        self.occupancy = np.zeros((len(scene.times), len(self.layout.zones)), np.int64)
        self.members: list[dict[int, float]] = [{} for _ in self.layout.zones]  # per zone: id -> time entered
        self.last_seen: dict[int, float] = {}
        self.owners = _Owners()
        self.visits: list[Visit] = []

    def update(self, frame: SimFrame) -> None:
        self.owners.learn(frame)
        d = frame.detections
        names = d.names()
        detections = self.sv.Detections(xyxy=d.boxes.astype(np.float64), mask=d.host_masks(), confidence=d.scores,
                                        class_id=d.class_ids, tracker_id=d.track_ids)
        for line, line_zone in zip(self.layout.lines, self.line_zones):
            crossed_in, crossed_out = line_zone.trigger(detections)
            # supervision's "in" is an arrival on the side with a negative cross product: rtseg's "left".
            for k in np.flatnonzero(crossed_in):
                self.crossings[line.name]["in" if line.in_side == "left" else "out"][names[k]] += 1
            for k in np.flatnonzero(crossed_out):
                self.crossings[line.name]["out" if line.in_side == "left" else "in"][names[k]] += 1
        ids = [int(t) for t in d.track_ids]
        for track_id in ids:
            if track_id >= 0:
                self.last_seen[track_id] = frame.time
        for j, (zone, polygon) in enumerate(zip(self.layout.zones, self.polygon_zones)):
            inside = polygon.trigger(detections) if len(d) else np.zeros(0, bool)
            members = self.members[j]
            for i, track_id in enumerate(ids):
                if track_id < 0:
                    continue
                if inside[i] and track_id not in members:
                    members[track_id] = frame.time
                    self.entries[zone.name][names[i]] += 1
                elif not inside[i] and track_id in members:
                    self.visits.append(Visit(self.owners.of[track_id], zone.name, members.pop(track_id), frame.time))
            for track_id in [t for t in members if frame.time - self.last_seen[t] > self.lost]:
                self.visits.append(Visit(self.owners.of[track_id], zone.name, members.pop(track_id),
                                         self.last_seen[track_id]))
            self.occupancy[frame.index, j] = len(members)

    def finish(self) -> Measured:
        visits = list(self.visits)
        for zone, members in zip(self.layout.zones, self.members):
            visits += [Visit(self.owners.of[t], zone.name, start, self.end) for t, start in members.items()]
        return Measured(self.crossings, self.entries, self.occupancy, visits)


def run_tools(scene: Scene, tools: Sequence[str] = TOOLS, settings: AnalyticsConfig | None = None) -> dict[str, Measured]:
    """Each of ``tools`` (:data:`TOOLS`) on the same frames of ``scene`` (made once)."""
    lost = (settings or AnalyticsConfig()).lost_seconds
    counters: dict[str, RtsegCounter | SupervisionCounter] = {}
    for tool in tools:
        if tool == "rtseg":
            counters[tool] = RtsegCounter(scene, settings)
        elif tool == "supervision":
            counters[tool] = SupervisionCounter(scene, None, lost)
        elif tool == "sv-centre":
            counters[tool] = SupervisionCounter(scene, "CENTER", lost)
        else:
            raise ValueError(f"unknown tool {tool!r}: one of {', '.join(TOOLS)}")
    for frame in scene.frames():
        for counter in counters.values():
            counter.update(frame)
    return {tool: counter.finish() for tool, counter in counters.items()}


def score(scene: Scene, measured: Measured) -> dict[str, Any]:
    """Count errors (per class and any class), summed absolute occupancy and dwell errors, and what they are of."""
    truth = scene.truth
    count_errors = any_class = 0
    for line, ways in truth.crossings.items():
        for way, counts in ways.items():
            got = measured.crossings[line][way]
            count_errors += sum(abs(got[c] - counts[c]) for c in CLASS_NAMES)
            any_class += abs(sum(got.values()) - sum(counts.values()))
    for zone, counts in truth.entries.items():
        got = measured.entries[zone]
        count_errors += sum(abs(got[c] - counts[c]) for c in CLASS_NAMES)
        any_class += abs(sum(got.values()) - sum(counts.values()))
    dwell = 0.0
    for visit in truth.visits:
        measured_seconds = sum(v.end - v.start for v in measured.visits
                               if v.body == visit.body and v.zone == visit.zone
                               and v.start < visit.end and v.end > visit.start)
        dwell += abs(measured_seconds - (visit.end - visit.start))
    events = sum(sum(c.values()) for ways in truth.crossings.values() for c in ways.values()) \
        + sum(sum(c.values()) for c in truth.entries.values())
    return {"family": scene.family, "seed": scene.seed, "frames": len(scene.times), "events": events,
            "count_errors": count_errors, "count_errors_any_class": any_class,
            "occupancy_abs": float(np.abs(measured.occupancy - truth.occupancy).sum()),
            "occupancy_cells": int(truth.occupancy.size), "dwell_abs": dwell, "visits": len(truth.visits)}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-scene scores pooled: counts summed, occupancy and dwell errors averaged over all frames and visits."""
    cells, visits = sum(r["occupancy_cells"] for r in rows), sum(r["visits"] for r in rows)
    return {"scenes": len(rows), "frames": sum(r["frames"] for r in rows), "events": sum(r["events"] for r in rows),
            "visits": visits, "count_errors": sum(r["count_errors"] for r in rows),
            "count_errors_any_class": sum(r["count_errors_any_class"] for r in rows),
            "occupancy_mae": sum(r["occupancy_abs"] for r in rows) / cells if cells else 0.0,
            "dwell_mae_s": sum(r["dwell_abs"] for r in rows) / visits if visits else 0.0}


def _errors(summary: dict[str, Any]) -> tuple[float, float, float]:
    return summary["count_errors"], summary["occupancy_mae"], summary["dwell_mae_s"]


def verdicts(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, bool]:
    """The issue's targets: no count errors on the plain families; on every family rtseg's count, occupancy and
    dwell errors each at most supervision's (default anchors); on the occlusion and large families strictly fewer
    count errors than supervision (missed, not waived, where supervision makes none either)."""
    out: dict[str, bool] = {}
    for family, tools in table.items():
        rtseg = _errors(tools["rtseg"])
        if family in PLAIN_FAMILIES:
            out[f"{family}: no count errors"] = rtseg[0] == 0
        if "supervision" in tools:
            peer = _errors(tools["supervision"])
            out[f"{family}: rtseg <= supervision"] = all(a <= b for a, b in zip(rtseg, peer))
            if family in PEER_FAMILIES:
                out[f"{family}: rtseg strictly fewer count errors than supervision"] = rtseg[0] < peer[0]
    return out


def evaluate(families: Sequence[str], seeds: Sequence[int], settings: AnalyticsConfig | None = None,
             tools: Sequence[str] = TOOLS, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every tool on every family and seed (the same detections for all); ``say`` the table; return every figure."""
    settings = settings or AnalyticsConfig()
    table: dict[str, dict[str, dict[str, Any]]] = {}
    runs: list[dict[str, Any]] = []
    for family in families:
        rows: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
        for seed in seeds:
            scene = make_scene(family, seed)
            for tool, measured in run_tools(scene, tools, settings).items():
                row = {"tool": tool, **score(scene, measured)}
                rows[tool].append(row)
                runs.append(row)
        table[family] = {tool: summarise(rows[tool]) for tool in tools}
    for line in markdown_table(table):
        say(line)
    met = verdicts(table)
    say("targets: " + "; ".join(f"{k} {'met' if ok else 'MISSED'}" for k, ok in met.items()))
    return {"seeds": list(seeds), "settings": dataclasses.asdict(settings), "table": table, "targets_met": met,
            "runs": runs}


def markdown_table(table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The per-family table as Markdown lines: one row per family and tool."""
    lines = ["| family | scenes | true events | true visits | tool | count errors | (any class) | "
             "occupancy error | dwell error (s) |", "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for family, tools in table.items():
        for tool, s in tools.items():
            lines.append(f"| {family} | {s['scenes']} | {s['events']} | {s['visits']} | {tool} | {s['count_errors']} | "
                         f"{s['count_errors_any_class']} | {s['occupancy_mae']:.3f} | {s['dwell_mae_s']:.2f} |")
    return lines


__all__ = ["CHECKING_SEEDS", "FAMILIES", "PEER_FAMILIES", "PLAIN_FAMILIES", "TOOLS", "TUNING_SEEDS", "Measured",
           "RtsegCounter", "SupervisionCounter", "evaluate", "markdown_table", "run_tools", "score", "summarise", "verdicts"]
