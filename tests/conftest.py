"""Shared fixtures: small synthetic clips made on the fly and the real footage."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import SAMPLE_CLIP, make_clip

from rtseg.offline.rtsp import rtsp_server_missing


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4")


@pytest.fixture
def clip_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(**kwargs) -> Path:
        return make_clip(tmp_path / f"clip{next(counter)}.mp4", **kwargs)

    return factory


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    """Real footage that every checkout has (samples/car.mp4): for tests that need a real clip, not this one."""
    return SAMPLE_CLIP


@pytest.fixture(scope="module")
def rtsp() -> None:
    """The real GStreamer RTSP server is there, or the test is skipped (a failure under RTSEG_REQUIRE_LIVE=1, as in CI)."""
    reason = rtsp_server_missing()
    if reason is not None:
        if os.environ.get("RTSEG_REQUIRE_LIVE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
