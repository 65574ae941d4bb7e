"""The one planner: names, output paths, skip-if-complete, the staging layout and the detector's floor, checked
before anything opens, the same for every front door (the cluster's plans included)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import make_clip

from rtseg.core.config import Config, StreamConfig
from rtseg.core.errors import OutputError, UsageError
from rtseg.pipeline.planner import Outputs, detector_settings, plan_run
from rtseg.sinks.archive import MANIFEST_NAME, StagedOutput


def _archive(folder: Path, names: tuple[str, ...] = ("a", "b")) -> list[Path]:
    folder.mkdir()
    return [make_clip(folder / f"{name}.mp4", frames=3) for name in names]


def test_one_file_writes_where_it_is_told_and_the_model_keeps_the_trackers_low_scores(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    plan = plan_run([str(clip)], Outputs(output=tmp_path / "out.mp4", save_json=tmp_path / "d.jsonl"), Config())
    [stream] = plan.streams
    assert (stream.name, stream.live, stream.archive_input) == ("in", False, None)
    assert stream.written() == stream.outputs and Path(stream.outputs.output) == tmp_path / "out.mp4"
    assert plan.manifest is None and plan.skipped == []
    assert plan.detector.score_threshold == Config().tracking.low_score == 0.1
    untracked = Config()
    untracked.tracking = dataclasses.replace(untracked.tracking, enabled=False)
    assert plan_run([str(clip)], Outputs(), untracked).detector.score_threshold == 0.5


def test_the_pages_floor_and_the_lowest_tracked_stream_decide_the_models_threshold():
    config = Config()
    assert detector_settings(config, floor=0.05).score_threshold == 0.05
    low = dataclasses.replace(config, tracking=dataclasses.replace(config.tracking, low_score=0.02))
    assert detector_settings(config, [config, low]).score_threshold == 0.02


def test_an_archive_is_staged_in_one_layout_and_a_rerun_skips_what_is_complete(tmp_path):
    _archive(tmp_path / "in")
    out = tmp_path / "out"
    plan = plan_run([str(tmp_path / "in")], Outputs(output=out, save_json=out), Config())
    assert [s.name for s in plan.streams] == ["a", "b"] and plan.manifest == out / MANIFEST_NAME
    a = plan.streams[0]
    assert a.finals == [out / "a.mp4", out / "a.jsonl"]
    assert a.written(attempt=2).output == out / ".a.mp4.partial" / "2" / "a.mp4"
    assert a.written().save_json == out / ".a.jsonl.partial" / "1" / "a.jsonl"
    for final in a.finals:
        final.write_bytes(b"done")
    again = plan_run([str(tmp_path / "in")], Outputs(output=out, save_json=out), Config())
    assert again.skipped == ["a"] and [s.name for s in again.streams] == ["b"]


def test_a_staged_output_is_only_ever_complete_under_its_final_name(tmp_path):
    staged = StagedOutput(tmp_path / "v.mp4", attempt=3)
    staged.prepare()
    staged.path.write_bytes(b"half")
    assert not staged.final.exists()
    StagedOutput(tmp_path / "v.mp4", attempt=4).prepare()  # a retry clears what the earlier attempt left
    assert not staged.path.exists()
    retry = StagedOutput(tmp_path / "v.mp4", attempt=4)
    retry.path.write_bytes(b"whole")
    retry.commit()
    assert staged.final.read_bytes() == b"whole" and not retry.directory.exists()
    empty = StagedOutput(tmp_path / "w.mp4")
    empty.prepare()
    empty.discard_if_empty()
    assert not empty.directory.exists()
    empty.prepare()
    empty.commit()  # a sink that got no frame wrote no file: nothing takes the final name
    assert not empty.final.exists() and not empty.directory.exists()
    older = StagedOutput(tmp_path / "x.mp4")
    older.directory.write_bytes(b"an older release's temporary file")
    older.prepare()
    assert older.path.parent.is_dir()


def test_a_cluster_run_is_either_an_archive_or_cameras_with_directories_for_outputs(tmp_path):
    clip = make_clip(tmp_path / "one.mp4", frames=3)
    with pytest.raises(UsageError, match="either archives of videos or cameras"):
        plan_run([str(clip), "rtsp://127.0.0.1:8554/cam"], Outputs(output=tmp_path / "o"), Config(), cluster=True)
    with pytest.raises(UsageError, match="--save-frames not available with --cluster"):
        plan_run([str(clip)], Outputs(output=tmp_path / "o", save_frames=tmp_path / "f"), Config(), cluster=True)
    with pytest.raises(OutputError, match="with --cluster --output must be a directory"):
        plan_run([str(clip)], Outputs(output=tmp_path / "o.mp4"), Config(), cluster=True)
    archive = plan_run([str(clip)], Outputs(output=tmp_path / "o"), Config(), cluster=True)
    assert archive.streams[0].archive_input == clip.resolve()
    assert archive.manifest == (tmp_path / "o" / MANIFEST_NAME).resolve()


def test_a_cluster_plan_holds_absolute_paths_for_workers_in_other_directories(tmp_path, monkeypatch):
    _archive(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    plan = plan_run(["in"], Outputs(output="out", save_json="out"), Config(), cluster=True)
    stream = plan.streams[0]
    assert stream.archive_input == (tmp_path / "in" / "a.mp4").resolve() and Path(stream.source).is_absolute()
    assert stream.finals == [(tmp_path / "out" / "a.mp4").resolve(), (tmp_path / "out" / "a.jsonl").resolve()]


def test_a_fleets_cameras_get_names_and_paths_and_an_earlier_recording_is_no_obstacle(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "gate.mp4").write_bytes(b"an earlier run's segment 0")
    cameras = [StreamConfig(source="rtsp://u:secret@127.0.0.1:8554/a", name="gate"), "rtsp://127.0.0.1:8554/b"]
    plan = plan_run(cameras, Outputs(output=rec), Config(), cluster=True)
    assert [(s.name, s.live, s.outputs.output) for s in plan.streams] == [
        ("gate", True, (rec / "gate.mp4").resolve()), ("127.0.0.1-8554-b", True, (rec / "127.0.0.1-8554-b.mp4").resolve())]
    with pytest.raises(OutputError, match="output must end in .mp4"):
        plan_run([StreamConfig(source="rtsp://127.0.0.1:8554/a", output=str(rec / "gate.avi"))], Outputs(), Config(),
                 cluster=True)
    assert pickle.loads(pickle.dumps(plan)) == plan  # plans cross to the cluster's workers as they are


def test_several_streams_need_directories_and_one_stream_a_file(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    with pytest.raises(OutputError, match="with several streams --output must be a directory"):
        plan_run([str(clip), str(clip)], Outputs(output=tmp_path / "x.mp4"), Config())
    with pytest.raises(OutputError, match="output must end in .mp4"):
        plan_run([str(clip)], Outputs(output=tmp_path / "x.avi"), Config())
    plan = plan_run([str(clip), str(clip)], Outputs(output=tmp_path / "many"), Config())
    assert [s.outputs.output for s in plan.streams] == [tmp_path / "many" / "in.mp4", tmp_path / "many" / "in-2.mp4"]


def test_a_folder_of_one_video_is_an_archive(tmp_path):
    [video] = _archive(tmp_path / "in", names=("only",))
    plan = plan_run([str(tmp_path / "in")], Outputs(output=tmp_path / "out"), Config())
    [stream] = plan.streams
    assert stream.archive_input == video and stream.finals == [tmp_path / "out" / "only.mp4"]
    assert plan.manifest == tmp_path / "out" / MANIFEST_NAME
    with pytest.raises(OutputError, match="for an archive of videos --output must be a directory"):
        plan_run([str(tmp_path / "in")], Outputs(output=tmp_path / "one.mp4"), Config())


def test_outputs_are_compared_with_the_inputs_and_each_other_as_files(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    (tmp_path / "hard.mp4").hardlink_to(clip)
    overwrite = Config()
    overwrite.output.overwrite = True
    with pytest.raises(OutputError, match="--output .*hard.mp4 is the input file .*in.mp4"):
        plan_run([str(clip)], Outputs(output=tmp_path / "hard.mp4"), overwrite)
    with pytest.raises(OutputError, match="--save-json .*x.json and --save-stats .*x.json are the same file"):
        plan_run([str(clip)], Outputs(save_json=tmp_path / "x.json", save_stats=tmp_path / "x.json"), overwrite)
    with pytest.raises(OutputError, match="--save-frames .*f and --save-crops .*f are the same file"):
        plan_run([str(clip)], Outputs(save_frames=tmp_path / "f", save_crops=tmp_path / "sub" / ".." / "f"), Config())
    two = [StreamConfig(source=str(clip), name="a", output=str(tmp_path / "same.mp4")),
           StreamConfig(source=str(clip), name="b", output=str(tmp_path / "same.mp4"))]
    with pytest.raises(OutputError, match="a's --output .*same.mp4 and b's --output .*same.mp4 are the same file"):
        plan_run(two, Outputs(), Config())
    several = plan_run([str(clip), str(clip)], Outputs(output=tmp_path / "o", save_json=tmp_path / "o"), Config())
    assert len(several.streams) == 2  # one folder for several options: each stream's files have their own names


def test_still_images_copies_never_land_on_the_images(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "a.png"), np.zeros((32, 32, 3), np.uint8))
    for outputs in (Outputs(output=folder), Outputs(save_frames=folder), Outputs(output=tmp_path / "x" / ".." / "photos")):
        with pytest.raises(OutputError, match="a.png is the input file"):
            plan_run([str(folder)], outputs, Config())
    with pytest.raises(OutputError, match="are the same file"):  # --heatmap onto the annotated copy of a.png
        plan_run([str(folder)], Outputs(output=tmp_path / "ann", heatmap=tmp_path / "ann" / "a.png"), Config())


def test_every_output_folder_is_checked_before_anything_opens(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", frames=3)
    (tmp_path / "file").write_text("not a folder")
    for outputs in (Outputs(save_frames=tmp_path / "file" / "frames"), Outputs(save_crops=tmp_path / "file"),
                    Outputs(output=tmp_path / "file" / "many")):
        with pytest.raises(OutputError, match="file"):
            plan_run([str(clip)] * (2 if outputs.output else 1), outputs, Config())
    snapshots = Config()
    snapshots.events.snapshots = str(tmp_path / "file" / "shots")
    snapshots.analytics.lines = [{"name": "gate", "points": [[0, 0.5], [1, 0.5]]}]
    with pytest.raises(OutputError, match="events.snapshots .* cannot be made: .*file is a file"):
        plan_run([str(clip)], Outputs(), snapshots)
    fine = plan_run([str(clip)], Outputs(save_frames=tmp_path / "new" / "deep" / "frames"), Config())
    assert fine.streams and not (tmp_path / "new").exists()  # checked, not made: the sink makes it when it opens
