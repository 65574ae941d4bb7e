"""Capture: frames, timestamps and the errors a user can make with a source path."""

from __future__ import annotations

import re

import av
import cv2
import numpy as np
import pytest
from helpers import make_clip, square_x

from rtseg.core.errors import SourceError
from rtseg.sources.factory import open_source
from rtseg.sources.files import FileSource


def test_frames_carry_index_timestamp_and_rgb_image(clip_factory):
    source = FileSource(clip_factory(frames=5, fps=10))
    try:
        frames = list(source.frames())
    finally:
        source.close()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert frames[2].image.shape == (64, 96, 3) and frames[2].image.dtype == np.uint8
    row = frames[2].image[64 // 4 + 8]
    assert row[square_x(2, 96) + 8].min() > 200 and row[2].max() < 100  # the white square, in RGB
    assert source.info.width == 96 and source.info.height == 64 and source.info.frame_count == 5


def test_the_shipped_sample_is_a_real_clip_with_audio(sample_clip):
    """samples/car.mp4, cut from the car clip at its keyframes without re-encoding: 60 frames, 4.8 s, its audio."""
    source = open_source(str(sample_clip))
    try:
        assert (source.info.width, source.info.height, source.info.frame_count) == (768, 432, 60)
        assert source.info.has_audio and sum(1 for _ in source.frames()) == 60
    finally:
        source.close()
    assert sample_clip.stat().st_size < 1_000_000


def test_missing_directory_empty_and_text_sources(tmp_path):
    with pytest.raises(SourceError, match="source not found"):
        FileSource(tmp_path / "missing.mp4")
    with pytest.raises(SourceError, match="is a directory"):
        FileSource(tmp_path)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match="source is empty"):
        FileSource(tmp_path / "empty.mp4")
    (tmp_path / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    with pytest.raises(SourceError, match="cannot read .*notes.mp4 as video"):
        FileSource(tmp_path / "notes.mp4")


def test_audio_only_file_has_no_video(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    with pytest.raises(SourceError, match="has no video stream"):
        FileSource(path)


def test_timestamps_are_kept_and_repaired_only_when_missing_or_not_increasing():
    from rtseg.sources.files import _next_pts

    assert _next_pts(None, None, 40) == 0
    assert _next_pts(7, None, 40) == 7
    assert _next_pts(120, 80, 40) == 120  # a gap (variable frame rate) is kept
    assert _next_pts(None, 80, 40) == 120  # missing: one nominal frame later
    assert _next_pts(80, 80, 40) == 81  # duplicate: nudged forward so the muxer accepts it


def test_an_mp4_cut_short_is_read_up_to_the_cut_when_its_index_is_at_the_start(sample_clip, tmp_path):
    """`head -c 200000 car.mp4`: the sample keeps its index (moov) at the start, so the frames before the cut play."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(sample_clip.read_bytes()[:200_000])
    source = open_source(str(cut))
    try:
        frames = sum(1 for _ in source.frames())
    finally:
        source.close()
    assert 20 < frames < 60


def test_an_mp4_cut_before_its_index_was_written_says_so_in_one_line(tmp_path):
    """PyAV, like most recorders, writes the index last: a file cut before it has no index and no codec setup."""
    data = make_clip(tmp_path / "whole.mp4", frames=30).read_bytes()
    assert data.index(b"mdat") < data.index(b"moov")  # the index at the end, as a camera writes it
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.index(b"moov") - 200])  # cut in the media data, before the index
    with pytest.raises(SourceError, match="cut short before its index"):
        open_source(str(cut))


@pytest.mark.parametrize(("width", "height", "budget", "message"), [
    (96, 64, 5000, "96x64 (6144 pixels): over the budget of 5000 pixels a frame"),
    (96, 8, 40_000_000, "96x8: each side must be at least 16 pixels"),
    (1040, 16, 40_000_000, "1040x16: one side is more than 64 times the other"),
])
def test_a_videos_frame_size_is_judged_from_its_header_before_any_frame_is_decoded(tmp_path, width, height, budget,
                                                                                   message):
    clip = make_clip(tmp_path / "clip.mp4", frames=2, width=width, height=height)
    with pytest.raises(SourceError, match=re.escape(message)):
        open_source(str(clip), max_pixels=budget)
    with pytest.raises(SourceError, match=re.escape(message)):
        open_source(str(clip), realtime=True, max_pixels=budget)
    assert open_source(str(make_clip(tmp_path / "ok.mp4", frames=2)), max_pixels=96 * 64).info.width == 96


def test_every_still_of_a_folder_is_judged_from_its_header_when_the_folder_opens(tmp_path):
    """The large image is the last of the folder: refused before the first one is decoded (and the model loads)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "a.png"), np.full((40, 60, 3), 90, np.uint8))
    assert cv2.imwrite(str(folder / "z.png"), np.full((100, 120, 3), 90, np.uint8))
    with pytest.raises(SourceError, match=r"z.png is 120x100 \(12000 pixels\): over the budget of 10000 pixels"):
        open_source(str(folder), max_pixels=10_000)
    source = open_source(str(folder), max_pixels=12_000)
    assert [frame.image.shape for frame in source.frames()] == [(40, 60, 3), (100, 120, 3)]
    single = open_source(str(folder / "a.png"))
    assert (single.info.width, single.info.height) == (60, 40)  # from the header, as the decoded image has it
