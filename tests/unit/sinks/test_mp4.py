"""Sinks: the MP4 file (timestamps, audio, finalising) and output path safety."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest
from helpers import read_video

from rtseg.core.config import OutputConfig
from rtseg.core.errors import OutputError
from rtseg.core.structures import Frame
from rtseg.sinks.base import check_output_path, same_file
from rtseg.sinks.mp4 import Mp4Sink


def _frame(index: int, pts: int, value: int = 0) -> Frame:
    image = np.full((32, 48, 3), value, np.uint8)
    return Frame(index=index, image=image, pts=pts, time_base=Fraction(1, 90000), captured_at=0.0, rendered=image)


def test_mp4_keeps_timestamps_and_content(tmp_path):
    path = tmp_path / "out.mp4"
    sink = Mp4Sink(path, OutputConfig())
    pts = [0, 3000, 6000, 15000, 18000]
    try:
        for i, p in enumerate(pts):
            sink.write(_frame(i, p, value=40 * i))
    finally:
        sink.close()
    frames, times, info = read_video(path)
    assert times == pytest.approx([p / 90000 for p in pts], abs=1e-4)
    assert [int(f.mean()) for f in frames] == pytest.approx([40 * i for i in range(5)], abs=3)
    assert (info["codec"], info["pix_fmt"], info["audio"]) == ("h264", "yuv420p", [])
    sink.close()  # closing twice is harmless


@pytest.mark.parametrize("fragment_seconds", [1.0, 0.0])
def test_audio_is_copied_without_reencoding(clip_factory, tmp_path, fragment_seconds):
    source = clip_factory(frames=10, audio=True)
    path = tmp_path / "out.mp4"
    config = dataclasses.replace(OutputConfig(), fragment_seconds=fragment_seconds)
    sink = Mp4Sink(path, config, audio_source=str(source), frame_rate=Fraction(10))
    try:
        for i in range(5):
            sink.write(Frame(index=i, image=np.zeros((64, 96, 3), np.uint8), pts=i * 100, time_base=Fraction(1, 1000),
                             captured_at=0.0))
    finally:
        sink.close()
    with av.open(str(source)) as original, av.open(str(path)) as copy:
        # A fragmented file skips the AAC priming packet (negative pts), which only an edit list could hide.
        source_packets = [bytes(p) for p in original.demux(original.streams.audio[0])
                          if p.size and (p.pts >= 0 or not fragment_seconds)]
        copied_packets = [bytes(p) for p in copy.demux(copy.streams.audio[0]) if p.size]
    assert 0 < len(copied_packets) < len(source_packets)
    assert copied_packets == source_packets[: len(copied_packets)]  # bit-exact copies, in order


def test_nothing_written_leaves_no_file(tmp_path):
    sink = Mp4Sink(tmp_path / "out.mp4", OutputConfig())
    sink.close()
    assert not (tmp_path / "out.mp4").exists()


def test_odd_frame_sizes_are_recorded_padded_by_their_last_column_and_row(tmp_path):
    """H.264 in yuv420p takes even sizes only: 47x31 frames are recorded as 48x32, the picture untouched and the
    added column and row copies of their neighbours (not black lines along two edges)."""
    image = np.zeros((31, 47, 3), np.uint8)
    image[:, :, 0] = np.linspace(0, 255, 47, dtype=np.uint8)[None, :]  # red grows to the right
    image[:, :, 1] = np.linspace(0, 255, 31, dtype=np.uint8)[:, None]  # green grows downwards
    sink = Mp4Sink(tmp_path / "out.mp4", dataclasses.replace(OutputConfig(), crf=0))
    try:
        for i in range(3):
            sink.write(Frame(index=i, image=image, pts=i, time_base=Fraction(1, 25), captured_at=0.0))
    finally:
        sink.close()
    frames, _, info = read_video(tmp_path / "out.mp4")
    assert len(frames) == 3 and (info["width"], info["height"]) == (48, 32)
    recorded = frames[0].astype(int)
    assert np.abs(recorded[:31, :47] - image).mean() < 4  # the picture as it was (4:2:0 blurs colour a little)
    assert np.abs(recorded[:, 47] - recorded[:, 46]).max() < 12 and np.abs(recorded[31] - recorded[30]).max() < 12
    assert recorded[:31, 47, 0].mean() > 200  # the added column is the red right edge, not black


def test_output_path_rules(tmp_path):
    assert check_output_path(tmp_path / "new.mp4", overwrite=False) == tmp_path / "new.mp4"
    (tmp_path / "old.mp4").write_bytes(b"x")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        check_output_path(tmp_path / "old.mp4", overwrite=False)
    assert check_output_path(tmp_path / "old.mp4", overwrite=True)
    with pytest.raises(OutputError, match="must end in .mp4 or .m4v or .mov"):
        check_output_path(tmp_path / "out.avi", overwrite=False)
    with pytest.raises(OutputError, match="directory does not exist"):
        check_output_path(tmp_path / "missing" / "out.mp4", overwrite=False)
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path / "dir.mp4", overwrite=True)


def test_files_are_told_apart_by_device_and_inode_not_by_name(tmp_path):
    source = tmp_path / "in.mp4"
    source.write_bytes(b"video")
    (tmp_path / "hard.mp4").hardlink_to(source)
    (tmp_path / "soft.mp4").symlink_to(source)
    assert same_file(tmp_path / "hard.mp4", source) and same_file(tmp_path / "soft.mp4", source)
    assert same_file(tmp_path / "." / "in.mp4", source)
    assert not same_file(tmp_path / "new.mp4", source) and not same_file(tmp_path / "new.mp4", tmp_path / "other.mp4")
    assert same_file(tmp_path / "new.mp4", tmp_path / "sub" / ".." / "new.mp4")  # neither exists: by name
