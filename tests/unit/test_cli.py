"""The command line end to end: real model (random weights), real files, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest
from helpers import read_video

from rtseg.cli import build_parser, main
from rtseg.core.commandline import PRECISIONS
from rtseg.detect.device import PRECISION_DTYPES
from rtseg.offline import evaluate, train
from rtseg.sinks.archive import MANIFEST_NAME, nothing_to_do, read_manifest

FAST = ["--weights", "none", "--size", "64", "--no-show"]


def test_synthetic_clip_to_mp4_keeps_frames_size_and_timestamps(clip_factory, tmp_path, capsys):
    source = clip_factory(frames=10, width=96, height=64, audio=True)
    out = tmp_path / "seg.mp4"
    assert main(["--source", str(source), "--output", str(out), *FAST]) == 0
    frames, times, info = read_video(out)
    _, source_times, _ = read_video(source)
    assert len(frames) == 10
    assert (info["width"], info["height"], info["codec"], info["pix_fmt"]) == (96, 64, "h264", "yuv420p")
    assert times == pytest.approx(source_times, abs=1e-3)
    assert info["audio"] == ["aac"]
    assert "10 read, 10 inferred, 10 written" in capsys.readouterr().out


def test_variable_frame_rate_survives(clip_factory, tmp_path):
    pts = [0, 40, 80, 200, 240, 500, 530, 560]  # ms, with gaps and a burst
    source = clip_factory(pts=pts, time_base=Fraction(1, 1000))
    out = tmp_path / "vfr.mp4"
    assert main(["--source", str(source), "--output", str(out), *FAST]) == 0
    _, times, _ = read_video(out)
    assert times == pytest.approx([p / 1000 for p in pts], abs=1e-3)


def test_real_footage_with_audio(sample_clip, tmp_path):
    out = tmp_path / "car-seg.mp4"
    assert main(["--source", str(sample_clip), "--output", str(out), "--max-frames", "6", *FAST]) == 0
    frames, times, info = read_video(out)
    assert len(frames) == 6
    assert (info["width"], info["height"]) == (768, 432)
    assert times == pytest.approx([i * 0.08 for i in range(6)], abs=1e-3)  # 12.5 fps source
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        packets = [p for p in container.demux(audio) if p.pts is not None]
        end = float((packets[-1].pts + packets[-1].duration) * audio.time_base)
    assert 0.4 <= end <= 0.6  # audio copied up to the end of the last video frame (6 x 0.08 s)


def test_console_script_and_module_are_the_same_program():
    result = subprocess.run([sys.executable, "-m", "rtseg", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--source" in result.stdout and "examples:" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--source", "missing.mp4"], "source not found: missing.mp4"),
    (["--source", "{clip}", "--score-threshold", "1.5"], "model.score_threshold: 1.5 is above the maximum 1.0"),
    (["--source", "{clip}", "--device", "cuda"], "no CUDA GPU is available"),
    (["--source", "{clip}", "--output", "{clip}", "--overwrite"], "is the input file"),
    (["--source", "{clip}", "--output", "{tmp}/exists.mp4"], "exists; pass --overwrite"),
    (["--source", "{clip}", "--output", "{tmp}/no/such/dir/out.mp4"], "output directory does not exist"),
    (["--source", "{clip}", "--classes", "persn"], "unknown class name 'persn' (did you mean person?)"),
    (["--source", "{clip}", "--config", "{tmp}/bad.yaml"], "model.colour: unknown key"),
    (["--source", "{clip}", "--bogus"], "unrecognized arguments: --bogus"),
    (["--source", "{clip}", "--save-every", "5"], "--save-every needs --save-frames DIR"),
    (["--source", "{clip}", "--no-track", "--color-by", "track"], "--color-by track needs tracking"),
    (["--source", "ftp://host/clip.mp4"], "unsupported source scheme ftp://"),
    (["--source", "{tmp}/empty"], "source is a directory with no images"),
    (["--source", "{tmp}"], "an archive needs --output DIR"),  # {tmp} holds videos: an archive
    (["--source", "{tmp}", "--output", "{tmp}/out.mp4"], "--output must be a directory"),
    (["--source", "{clip}", "--source", "{clip}", "--output", "{tmp}/out.mp4"], "--output must be a directory"),
])
def test_errors_before_start_are_one_line_and_exit_2(args, message, clip, tmp_path, capsys):
    (tmp_path / "exists.mp4").write_bytes(b"x")
    (tmp_path / "bad.yaml").write_text("model:\n  colour: red\n")
    (tmp_path / "empty").mkdir()
    argv = [a.format(clip=clip, tmp=tmp_path) for a in args] + ["--weights", "none", "--no-show"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rtseg: error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_runtime_failure_exits_1_with_the_stage_named(clip, tmp_path, capsys, monkeypatch):
    def explode(self, images):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr("rtseg.detect.maskrcnn.MaskRCNNDetector.detect", explode)
    out = tmp_path / "out.mp4"
    assert main(["--source", str(clip), "--output", str(out), *FAST]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "rtseg: error: inference stage failed: RuntimeError: CUDA out of memory (simulated)"


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["--source", str(tmp_path / "missing.mp4"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_no_display_runs_headless_with_one_notice(clip, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "out.mp4"
    assert main(["--source", str(clip), "--output", str(out), "--weights", "none", "--size", "64"]) == 0
    err = capsys.readouterr().err
    assert err.count("no display available") == 1
    assert len(read_video(out)[0]) == 12


def test_train_and_evaluate_are_subcommands(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path / "missing.json"), "--images", str(tmp_path),
                 "--weights", "none"]) == 2
    assert "annotation file not found" in capsys.readouterr().err


def test_device_and_precision_flags_are_declared_once_for_every_command():
    parsers = {"rtseg": build_parser(), "train": train._parser(), "evaluate": evaluate._parser()}
    assert PRECISIONS == ("auto", *PRECISION_DTYPES)  # the config's choices are what the detector can run
    declared = {name: {a.dest: (a.choices, a.help) for a in parser._actions if a.dest in ("device", "precision")}
                for name, parser in parsers.items()}
    for flag in ("device", "precision"):
        assert declared["rtseg"][flag][0] == declared["train"][flag][0] == declared["evaluate"][flag][0]
    assert declared["rtseg"]["device"] == declared["train"]["device"] == declared["evaluate"]["device"]
    assert declared["rtseg"]["precision"][0] == PRECISIONS
    # What 'auto' means differs, and each help says it: bf16 on capable CPUs for inference, fp32 on the CPU for
    # training (no bf16 recipe), fp32 for evaluation (the reference).
    assert "bf16 on CPUs with native bf16" in declared["rtseg"]["precision"][1]
    assert "fp32 on the CPU" in declared["train"]["precision"][1]
    assert "auto = fp32" in declared["evaluate"]["precision"][1]
    # the main command leaves both to the configuration file; the subcommands, which read none, default to auto
    assert build_parser().parse_args(["--source", "x.mp4"]).precision is None
    assert evaluate._parser().parse_args(["--data", "d", "--images", "i", "--weights", "w"]).precision == "auto"


def test_version_and_the_class_names(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("rtseg 0.1.0 (torch ")
    assert main(["classes"]) == 0
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 80 and names[:3] == ["person", "bicycle", "car"] and "N/A" not in names
    assert main(["classes", "--ids"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "3 car"  # the class_id of --save-json, gaps and all


def test_a_checkpoints_class_names_and_a_missing_one(tmp_path, capsys):
    import torch

    path = tmp_path / "mine.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "meta": {"class_names": ["__background__", "square", "disc"]}}, path)
    assert main(["classes", "--weights", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["square", "disc"]
    assert main(["classes", "--weights", str(tmp_path / "gone.pt")]) == 2
    assert capsys.readouterr().err.strip() == f"rtseg: error: weights file not found: {tmp_path / 'gone.pt'}"


def test_no_source_says_what_to_give(capsys):
    assert main(["--no-show"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--source" in err and "samples/car.mp4" in err


def test_an_archive_cut_by_max_frames_is_recorded_cut_and_redone_and_a_finished_one_is_nothing_to_do(
        clip_factory, tmp_path, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    for i in range(2):
        clip_factory(frames=6).rename(archive / f"v{i}.mp4")
    out = tmp_path / "seg"
    argv = ["--source", str(archive), "--output", str(out), *FAST]
    assert main([*argv, "--max-frames", "3"]) == 0
    records = read_manifest(out / MANIFEST_NAME)
    assert sorted((r["status"], r["frames"], r["output"]) for r in records) == [("cut", 3, None)] * 2
    assert not (out / "v0.mp4").exists() and (out / ".v0.mp4.partial" / "1" / "v0.mp4").exists()  # staged, to look at
    capsys.readouterr()
    assert main(argv) == 0  # redoes both, to their ends
    assert "6 read, 6 inferred, 6 written" in capsys.readouterr().out
    assert [r["status"] for r in read_manifest(out / MANIFEST_NAME)[2:]] == ["done", "done"]
    assert len(read_video(out / "v0.mp4")[0]) == 6 and not (out / ".v0.mp4.partial").exists()
    assert main(argv) == 0  # nothing left: one line, exit 0
    assert capsys.readouterr().out.splitlines() == [nothing_to_do(2)]  # as with --cluster


def test_a_file_of_exactly_max_frames_is_whole(clip_factory, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    clip_factory(frames=4).rename(archive / "short.mp4")
    clip_factory(frames=6).rename(archive / "long.mp4")
    assert main(["--source", str(archive), "--output", str(tmp_path / "seg"), "--max-frames", "4", *FAST]) == 0
    records = {Path(r["file"]).name: r["status"] for r in read_manifest(tmp_path / "seg" / MANIFEST_NAME)}
    assert records == {"short.mp4": "done", "long.mp4": "cut"}
    assert (tmp_path / "seg" / "short.mp4").exists() and not (tmp_path / "seg" / "long.mp4").exists()


def test_a_file_cut_by_max_frames_says_so_and_a_whole_one_does_not(clip_factory, tmp_path, capsys):
    source = clip_factory(frames=6)
    assert main(["--source", str(source), "--output", str(tmp_path / "a.mp4"), "--max-frames", "3", *FAST]) == 0
    assert "frames: 3 read, 3 inferred, 3 written (cut by --max-frames before the end of the file)" in \
        capsys.readouterr().out
    assert main(["--source", str(source), "--output", str(tmp_path / "b.mp4"), "--max-frames", "6", *FAST]) == 0
    out = capsys.readouterr().out
    assert "frames: 6 read, 6 inferred, 6 written\n" in out and "cut by" not in out
