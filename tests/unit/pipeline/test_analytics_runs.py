"""Scene analytics through the whole pipeline: events on frames and in files, drawings, heatmaps, summaries,
per-stream zones, archives, and the one-line errors of the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import make_clip, read_video, square_x

from rtseg.api import Outputs, process, stream
from rtseg.cli import main
from rtseg.core.config import Config, StreamConfig, apply_overrides
from rtseg.offline.stubs import SquareDetector
from rtseg.render.scene import zone_color
from rtseg.sinks.archive import MANIFEST_NAME, nothing_to_do, read_manifest

FAST = ["--weights", "none", "--size", "64", "--no-show"]
# The clip's white square (16 x 16, rows 24..39 of 96) moves right 3 px a frame from x = 4: it enters the left
# half once its track is confirmed (frame 1), leaves it at frame 24 (4 of 16 columns inside: below 0.4; its share
# fell below 0.5 at frame 23, where its visit ends) and is 60 % over the line at x = 112 at frame 34, so crosses
# at frame 35, its second sighting there.
ANALYTICS = {"zones": [{"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}],
             "lines": [{"name": "gate", "points": [[0.7, 0], [0.7, 1]]}]}


def _config(**analytics) -> Config:
    return apply_overrides(Config(), {"analytics": {**ANALYTICS, **analytics}, "output": {"show": False}}, "test")


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_clip_gives_its_known_events_drawings_heatmap_and_counts(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=40, width=160, height=96)
    outputs = Outputs(output=tmp_path / "out.mp4", events=tmp_path / "events.jsonl", heatmap=tmp_path / "heat.png",
                      save_stats=tmp_path / "stats.json")
    result = process(str(clip), outputs, config=_config(), detector=SquareDetector())
    events = [e for e in _events(tmp_path / "events.jsonl") if e["kind"] != "occupancy"]
    assert [(e["kind"], e.get("zone") or e.get("line"), e["frame"], e["track_id"], e.get("direction"))
            for e in events] == [("enter", "left", 1, 1, None), ("exit", "left", 24, 1, None),
                                 ("cross", "gate", 35, 1, "in")]
    assert events[1]["dwell"] == pytest.approx(2.2) and events[2]["time"] == pytest.approx(3.5)
    assert square_x(34, 160) + 16 - 112 >= 0.6 * 16 > square_x(33, 160) + 16 - 112
    occupancy = [e for e in _events(tmp_path / "events.jsonl") if e["kind"] == "occupancy"]
    assert [e["time"] for e in occupancy] == pytest.approx([0.0, 1.0, 2.0, 3.0])  # one a second of video
    assert [e["count"] for e in occupancy] == [0, 1, 1, 0]
    assert "line gate: in 1 (square 1), out 0" in result.summary.lines()
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["analytics"]["lines"]["gate"] == {"in": {"square": 1}, "out": {}}
    # The video shows the zone tinted in its colour, and the heatmap is hot where the square went, cold elsewhere.
    frames, _, _ = read_video(tmp_path / "out.mp4")
    empty_corner = frames[10][80, 40].astype(float)  # inside the zone, below the square's row
    assert np.abs(empty_corner - (60 * 0.82 + np.array(zone_color(0)) * 0.18)).max() <= 8
    heat = cv2.cvtColor(cv2.imread(str(tmp_path / "heat.png")), cv2.COLOR_BGR2RGB).astype(int)
    assert heat.shape == (96, 160, 3)
    assert (np.abs(heat[70:] - int(60 * 0.55)) <= 3).all()  # no object ever went below row 40: the dimmed scene
    assert np.abs(heat[32, 20:100] - int(60 * 0.55)).max(axis=1).min() > 40  # the square's path is coloured


def test_streamed_frames_carry_the_events_the_file_holds(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=40, width=160, height=96)
    seen = []
    for frame in stream(str(clip), Outputs(events=tmp_path / "events.jsonl"), config=_config(),
                        detector=SquareDetector()):
        seen += [e.as_dict() for e in frame.events]
        assert frame.scene is not None and [z.name for z in frame.scene.zones] == ["left"]
    assert seen == _events(tmp_path / "events.jsonl") and len(seen) == 7


def test_snapshots_hold_the_frame_and_the_object_of_each_entry_and_crossing(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", frames=40, width=160, height=96)
    config = apply_overrides(_config(), {"events": {"snapshots": str(tmp_path / "shots")}}, "test")
    process(str(clip), Outputs(), config=config, detector=SquareDetector())
    shots = tmp_path / "shots" / "clip"
    assert sorted(p.name for p in shots.iterdir()) == [
        "clip-000001-enter-left-t1-object.png", "clip-000001-enter-left-t1.jpg",
        "clip-000035-cross-gate-t1-object.png", "clip-000035-cross-gate-t1.jpg"]
    frame = cv2.imread(str(shots / "clip-000035-cross-gate-t1.jpg"))
    cut = cv2.imread(str(shots / "clip-000035-cross-gate-t1-object.png"), cv2.IMREAD_UNCHANGED)
    assert frame.shape == (96, 160, 3) and cut.shape == (16, 16, 4)
    assert (cut[..., 3] == 255).all() and (cut[..., :3] > 200).all()  # the white square, wholly inside its mask


def test_each_stream_of_a_run_has_its_own_zones(tmp_path):
    a = make_clip(tmp_path / "a.mp4", frames=40, width=160, height=96)
    b = make_clip(tmp_path / "b.mp4", frames=40, width=160, height=96)
    config = apply_overrides(Config(), {"output": {"show": False}}, "test")
    right = {"zones": [{"name": "right", "points": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}]}
    sources = [StreamConfig(source=str(a), name="cam-a", analytics=ANALYTICS), StreamConfig(source=str(b), name="cam-b",
                                                                                            analytics=right)]
    process(sources, Outputs(events=tmp_path / "events"), config=config, detector=SquareDetector())
    first = _events(tmp_path / "events" / "cam-a.events.jsonl")
    second = _events(tmp_path / "events" / "cam-b.events.jsonl")
    assert {e.get("zone") or e.get("line") for e in first} == {"left", "gate"} and {e["stream"] for e in first} == {"cam-a"}
    # The right half from x = 80: at frame 24 the square (76..91) is 12/16 inside (past 0.6), at frame 23 9/16.
    assert [(e["kind"], e["frame"]) for e in second if e["kind"] != "occupancy"] == [("enter", 24)]


def test_an_archive_writes_events_per_video_under_the_manifest_rules(tmp_path, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(2):
        make_clip(archive / f"clip{i}.mp4", frames=40, width=160, height=96)
    config = tmp_path / "zones.yaml"
    config.write_text(json.dumps({"analytics": ANALYTICS}))
    out = tmp_path / "out"
    argv = ["--source", str(archive), "--output", str(out), "--events", str(tmp_path / "events"), "--config",
            str(config), *FAST]
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == ["clip0.events.jsonl", "clip1.events.jsonl"]
    assert [r["status"] for r in read_manifest(out / MANIFEST_NAME)] == ["done", "done"]
    capsys.readouterr()
    assert main(argv) == 0 and capsys.readouterr().out.splitlines() == [nothing_to_do(2)]  # nothing to do: not an error
    (tmp_path / "events" / "clip1.events.jsonl").unlink()  # an output lost: that video is redone
    assert main(argv) == 0 and "skipped 1 input(s)" in capsys.readouterr().out
    assert (tmp_path / "events" / "clip1.events.jsonl").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--zone", "door=0.1,0.2,0.4,0.2"], "rtseg: error: zone 'door': needs at least 3 points, got 2"),
    (["--zone", "yard=10,10,500,10,500,60"], "rtseg: error: zone 'yard': the point (500, 10) lies outside the "
                                              "96x64 frame"),
    (["--zone", "door=0,0,0.5,0,0.5,1:persn"], "rtseg: error: zone 'door': unknown class 'persn' (the model knows"),
    (["--line", "gate=0,0.5,1,0.5", "--no-track"], "rtseg: error: clip: lines count crossings of tracked objects; "
                                                   "turn tracking on (drop --no-track) or remove the lines"),
    (["--events", "EVENTS"], "rtseg: error: clip: events need zones or lines (--zone, --line or analytics: in "
                             "--config)"),
    (["--line", "gate=0,0.5,1,0.5", "--zone", "gate=0,0,1,0,1,1"], "rtseg: error: clip: analytics: the name 'gate' "
                                                                   "is given to several zones or lines"),
])
def test_bad_analytics_are_one_line_and_exit_2_before_any_frame(extra, message, clip, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    argv = ["--source", str(clip), "--output", str(out), *FAST,
            *[str(tmp_path / "events.jsonl") if a == "EVENTS" else a for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err and "Traceback" not in err
    assert not out.exists() or read_video(out)[0] == []


def test_the_readme_picture_is_a_frame_of_a_run_with_a_zone_and_a_line(tmp_path):
    """docs/analytics.png (saved with RTSEG_UPDATE_DOCS=1): frame 14 of a stub run, the square inside the zone."""
    clip = make_clip(tmp_path / "clip.mp4", frames=20, width=320, height=180)
    regions = {"zones": [{"name": "door", "points": [[0.02, 0.1], [0.3, 0.1], [0.3, 0.9], [0.02, 0.9]]}],
               "lines": [{"name": "gate", "points": [[0.6, 0.05], [0.6, 0.95]], "in": "right"}]}
    config = apply_overrides(Config(), {"analytics": regions, "output": {"show": False}}, "test")
    frames = [f for f in stream(str(clip), config=config, detector=SquareDetector()) if f.index == 14]
    picture = frames[0].rendered
    assert frames[0].scene is not None and frames[0].scene.zones[0].inside == {"square": 1}
    x = square_x(14, 320)
    box = picture[180 // 4 - 3: 180 // 4 + 19, x - 3: x + 19]
    assert (np.abs(box.astype(int) - zone_color(0)).sum(axis=2) < 40).any()  # the object framed in the zone's colour
    if os.environ.get("RTSEG_UPDATE_DOCS"):
        large = cv2.resize(picture, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(Path(__file__).parents[3] / "docs" / "analytics.png"), cv2.cvtColor(large, cv2.COLOR_RGB2BGR))
