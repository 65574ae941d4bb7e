"""The Python API: Segmenter on single images, draw, and stream's frame-by-frame loop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from helpers import SquareDetector, make_clip

from rtseg.api import Segmenter, draw, stream
from rtseg.core.errors import ConfigError, StageError


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(weights="none", device="cpu", size=64, score_threshold=0.0, detections_per_image=3)


def test_segmenter_rgb_and_bgr_agree(segmenter):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    a = segmenter(rgb)
    b = segmenter(np.ascontiguousarray(rgb[..., ::-1]), bgr=True)
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    assert a.masks.shape == (3, 48, 64) and segmenter.class_names[1] == "person"


def test_segmenter_rejects_bad_images_and_settings(segmenter):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 image"):
        segmenter(np.zeros((10, 10), np.uint8))
    with pytest.raises(ConfigError, match="model.size: expected int, got str 'big'"):
        Segmenter(weights="none", size="big")


def test_draw_keeps_the_channel_order(segmenter):
    image = np.full((48, 64, 3), (10, 20, 30), np.uint8)
    detections = segmenter(image)
    rgb_out = draw(image, detections)
    bgr_out = draw(np.ascontiguousarray(image[..., ::-1]), detections, bgr=True)
    assert (rgb_out == bgr_out[..., ::-1]).all()


def test_stream_yields_every_frame_in_order(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=9)
    frames = list(stream(str(clip), detector=SquareDetector()))
    assert [f.index for f in frames] == list(range(9))
    assert all(len(f.detections) == 1 and f.rendered is not None for f in frames)


def test_breaking_out_of_stream_stops_the_pipeline(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=200)
    before = threading.active_count()
    for frame in stream(str(clip), detector=SquareDetector(delay=0.01)):
        if frame.index == 3:
            break
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_stream_raises_a_failure(tmp_path):
    clip = make_clip(tmp_path / "c.mp4", frames=10)
    seen = []
    with pytest.raises(StageError, match="inference stage failed"):
        for frame in stream(str(clip), detector=SquareDetector(fail_at=4)):
            seen.append(frame.index)
    assert seen == [0, 1, 2, 3]


def test_an_existing_output_is_refused_before_a_stream_is_opened(tmp_path):
    from rtseg.api import Outputs, process
    from rtseg.core.errors import OutputError

    out = tmp_path / "cam.mp4"
    out.write_bytes(b"earlier recording")
    # Nothing listens on port 9: opening first would fail with a connection error instead.
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        process("rtsp://127.0.0.1:9/stream", Outputs(output=out), detector=SquareDetector())
    assert out.read_bytes() == b"earlier recording"
