"""The command line never destroys what it reads and fails early: outputs compared with inputs and with each other
as files (hard links too), every output folder checked before the model loads, frame sizes judged from the file's
header before a frame is decoded, odd sizes recorded, and a folder of one video treated as the archive it is.

Each case runs ``rtseg`` itself (in this process, random weights) on real files and asserts on exit codes, the one
line on stderr and the bytes left on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import make_clip, read_video

from rtseg.cli import main

FAST = ["--weights", "none", "--size", "64", "--no-show"]


def raw_video(path: Path, width: int, height: int, frames: int = 3) -> Path:
    """A lossless FFV1 clip in Matroska of any size (H.264 takes neither odd nor tiny sizes): a gradient, so that
    padding can be seen. Huge sizes cost little: a flat grey frame compresses to a few kilobytes."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "gray"
        image = np.zeros((height, width), np.uint8)
        if width * height < 10_000_000:
            image[:] = (np.arange(width, dtype=np.uint32)[None, :] * 255 // max(width - 1, 1)).astype(np.uint8)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="gray")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def last_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refusal prints, checked to be one line and no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err and not any("Traceback" in line for line in err)
    assert err[-1].startswith("rtseg: error: ")
    return err[-1]


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write into: a read-only one of our own, or where permissions do not bind (root),
    /proc/self, which the kernel keeps unwritable for everyone."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if not os.access(folder, os.W_OK):
            yield folder
        elif Path("/proc/self").is_dir() and not os.access("/proc/self", os.W_OK):
            yield Path("/proc/self")
        else:
            pytest.skip("no unwritable folder on this machine (root, and no /proc)")
    finally:
        folder.chmod(0o755)


# -- outputs that can never be the input ---------------------------------------------------------------------------


def test_a_hard_link_to_the_input_is_the_input_even_with_overwrite(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    original = source.read_bytes()
    (tmp_path / "hard.mp4").hardlink_to(source)
    assert main(["--source", str(source), "--output", str(tmp_path / "hard.mp4"), "--overwrite", *FAST]) == 2
    assert "is the input file" in last_error(capsys)
    assert source.read_bytes() == original


@pytest.mark.parametrize("option", ["--save-json", "--events", "--heatmap", "--save-stats"])
def test_no_output_option_may_replace_the_input_through_a_link(option, tmp_path, capsys):
    """Each file option, pointed at a hard link to the video (its suffix is the option's own, so only the
    file's identity tells)."""
    source = make_clip(tmp_path / "in.mp4")
    original = source.read_bytes()
    suffix = {"--heatmap": ".png", "--save-stats": ".json"}.get(option, ".jsonl")
    link = tmp_path / f"link{suffix}"
    link.hardlink_to(source)
    extra = ["--line", "gate=0,0.5,1,0.5"] if option == "--events" else []
    assert main(["--source", str(source), option, str(link), "--overwrite", *extra, *FAST]) == 2
    assert f"{option} {link} is the input file" in last_error(capsys)
    assert source.read_bytes() == original


def test_two_options_naming_one_file_are_refused_even_with_overwrite(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    target = tmp_path / "x.json"
    assert main(["--source", str(source), "--save-json", str(target), "--save-stats", str(target), "--overwrite",
                 *FAST]) == 2
    assert "--save-json" in (line := last_error(capsys)) and "--save-stats" in line and "same file" in line
    assert not target.exists()


def test_two_options_naming_one_file_through_a_hard_link_are_refused(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    (tmp_path / "a.jsonl").write_text("earlier detections\n")
    (tmp_path / "b.jsonl").hardlink_to(tmp_path / "a.jsonl")
    assert main(["--source", str(source), "--save-json", str(tmp_path / "a.jsonl"), "--events",
                 str(tmp_path / "b.jsonl"), "--line", "gate=0,0.5,1,0.5", "--overwrite", *FAST]) == 2
    assert "same file" in last_error(capsys)


def test_the_config_file_is_an_input_too(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    config = tmp_path / "settings.json"  # YAML reads JSON: a config file may well end in .json
    config.write_text('{"model": {"score_threshold": 0.4}}\n')
    assert main(["--source", str(source), "--config", str(config), "--save-stats", str(config), "--overwrite",
                 *FAST]) == 2
    assert "is the --config file" in last_error(capsys)
    assert config.read_text() == '{"model": {"score_threshold": 0.4}}\n'


def test_still_images_are_never_written_over_by_their_annotated_copies(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = np.full((48, 64, 3), 90, np.uint8)
    for name in ("a.png", "b.png"):
        assert cv2.imwrite(str(folder / name), image)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["--source", str(folder), "--save-frames", str(folder), "--overwrite", *FAST]) == 2
    assert "is the input file" in last_error(capsys)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# -- every output folder checked before the model loads --------------------------------------------------------


def test_an_unwritable_save_frames_folder_is_one_line_before_any_work(unwritable, tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    assert main(["--source", str(source), "--save-frames", str(unwritable / "frames"), *FAST]) == 2
    assert "--save-frames" in (line := last_error(capsys)) and "not writable" in line


def test_a_save_frames_folder_below_a_file_is_one_line(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    assert main(["--source", str(source), "--save-frames", str(tmp_path / "notes.txt" / "frames"), *FAST]) == 2
    assert "notes.txt is a file" in last_error(capsys)


def test_an_unwritable_crops_folder_fails_before_the_model_and_leaves_no_video(unwritable, tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    assert main(["--source", str(source), "--output", str(out), "--save-crops", str(unwritable),
                 "--score-threshold", "0", *FAST]) == 2
    assert "--save-crops" in (line := last_error(capsys)) and "not writable" in line
    assert not out.exists()


def test_an_unwritable_folder_for_annotated_stills_fails_before_the_model(unwritable, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    assert cv2.imwrite(str(photo), np.full((48, 64, 3), 90, np.uint8))
    assert main(["--source", str(photo), "--output", str(unwritable), *FAST]) == 2
    assert "--output" in (line := last_error(capsys)) and "not writable" in line


# -- a folder of one video is an archive -----------------------------------------------------------------------


def test_a_folder_holding_one_video_is_an_archive(tmp_path, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    make_clip(archive / "only.mp4", frames=4)
    out = tmp_path / "out"
    assert main(["--source", str(archive), "--output", str(out), *FAST]) == 0
    frames, _, _ = read_video(out / "only.mp4")
    assert len(frames) == 4 and (out / "rtseg-manifest.jsonl").is_file()
    capsys.readouterr()
    assert main(["--source", str(archive), "--output", str(out), *FAST]) == 0  # a rerun: nothing left to do
    assert "already" in capsys.readouterr().out


# -- frame sizes: judged before decoding, odd ones recorded ----------------------------------------------------


def test_odd_frame_sizes_are_recorded_padded_to_even(tmp_path, capsys):
    source = raw_video(tmp_path / "odd.mkv", 641, 481)
    out = tmp_path / "out.mp4"
    assert main(["--source", str(source), "--output", str(out), *FAST]) == 0
    frames, _, info = read_video(out)
    assert len(frames) == 3 and (info["width"], info["height"]) == (642, 482)
    right_edge = frames[0][:481, 640:642].astype(int)
    assert abs(right_edge[:, 1] - right_edge[:, 0]).max() < 16  # the padding repeats the last column: white, not black
    assert right_edge[:, 1].mean() > 200


@pytest.mark.parametrize("width, height, message", [
    (3, 5, "3x5: each side must be at least 16 pixels"),
    (9000, 2, "9000x2: each side must be at least 16 pixels"),
    (2048, 16, "2048x16: one side is more than 64 times the other"),
])
def test_extreme_frame_sizes_are_refused_before_any_work(width, height, message, tmp_path, capsys):
    source = raw_video(tmp_path / "strange.mkv", width, height)
    out = tmp_path / "out.mp4"
    assert main(["--source", str(source), "--output", str(out), *FAST]) == 2
    assert message in last_error(capsys)
    assert not out.exists()


def test_a_video_over_the_pixel_budget_is_refused_from_its_header(tmp_path, capsys):
    source = raw_video(tmp_path / "huge.mkv", 9000, 5000, frames=1)  # 45 Mpx a frame, 26 KB on disk
    assert main(["--source", str(source), "--output", str(tmp_path / "out.mp4"), *FAST]) == 2
    assert "9000x5000 (45.0 megapixels): over the budget of 40.0 megapixels" in last_error(capsys)


def test_the_pixel_budget_is_a_setting(tmp_path, capsys):
    source = make_clip(tmp_path / "in.mp4", width=96, height=64)
    config = tmp_path / "small.yaml"
    config.write_text("pipeline:\n  max_pixels: 5000\n")
    assert main(["--source", str(source), "--config", str(config), *FAST]) == 2
    assert "96x64 (6144 pixels): over the budget of 5000 pixels" in last_error(capsys)
    photo = tmp_path / "photo.png"
    assert cv2.imwrite(str(photo), np.full((80, 80, 3), 90, np.uint8))
    assert main(["--source", str(photo), "--config", str(config), *FAST]) == 2
    assert "80x80 (6400 pixels): over the budget" in last_error(capsys)
