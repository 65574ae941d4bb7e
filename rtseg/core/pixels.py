"""Pixel budgets: how large an image or a video frame rtseg agrees to decode, judged before it is decoded.

A few kilobytes of PNG can decode to gigabytes (an 8000x8000 image is 192 MB as RGB, and every mask of it as much
again), so every front door reads the size from the file's header (images: Pillow, which parses headers without
decoding; videos: the stream's codec parameters) and refuses, in one line naming the size and the budget, what is
over it or too small for the model and the encoder. Decoding happens only after ``check_frame_size`` passed.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from rtseg.core.errors import SourceError

# 40 megapixels: an 8K UHD frame (7680x4320, 33.2 Mpx) passes, and one RGB copy is at most 120 MB.
DEFAULT_MAX_PIXELS = 40_000_000
# The model's backbone downsamples 32 times and the encoder's 4:2:0 chroma needs two pixels a side: below 16 pixels
# a side a frame is not worth a model call, and torchvision fails on it with a raw error.
MIN_SIDE = 16
# Beyond 64:1 the model's resize makes the short side 0 or the long side unbounded: a 9000x2 strip is not a picture.
MAX_ASPECT = 64


class OverBudget(SourceError):
    """An image or frame whose size is refused before it is decoded."""


def megapixels(pixels: int) -> str:
    """A pixel count as people read it: megapixels from one million up, the count itself below (a small budget
    would read as "0.0 megapixels")."""
    return f"{pixels / 1e6:.1f} megapixels" if pixels >= 1_000_000 else f"{pixels} pixels"


def check_frame_size(width: int, height: int, max_pixels: int, what: str) -> None:
    """Refuse a size rtseg will not decode: over ``max_pixels``, a side under ``MIN_SIDE``, or stretched beyond
    ``MAX_ASPECT`` to one. ``what`` names the thing in the message ("clip.mp4's frames", "the uploaded image")."""
    if width * height > max_pixels:
        raise OverBudget(f"{what} is {width}x{height} ({megapixels(width * height)}): over the budget of "
                         f"{megapixels(max_pixels)} a frame")
    if min(width, height) < MIN_SIDE:
        raise OverBudget(f"{what} is {width}x{height}: each side must be at least {MIN_SIDE} pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise OverBudget(f"{what} is {width}x{height}: one side is more than {MAX_ASPECT} times the other")


def image_size(data: bytes | Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header without decoding its pixels; None when it is no image format
    rtseg reads. Huge sizes are reported, not refused here: Pillow's own bomb guard is silenced and the budget
    decides."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            source = io.BytesIO(data) if isinstance(data, bytes) else data
            with Image.open(source) as image:
                return image.size
    except Image.DecompressionBombError as error:  # over twice Pillow's limit (about 179 Mpx): far over any budget
        raise OverBudget(f"the image is too large to decode: {error}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


_JPEG_START = b"\xff\xd8\xff"
# libjpeg scales while it decodes (in the DCT): a JPEG read at 1/8 never exists at full size in memory. Other formats
# are decoded whole and resized by OpenCV, so they are only ever read at full size.
_JPEG_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def decode_image(data: bytes | Path, max_pixels: int, what: str, max_side: int = 0) -> np.ndarray | None:
    """The image as RGB uint8, its size checked against the budget first; None when it is no image rtseg reads.

    ``data`` is the file's bytes (uploads) or its path (files on disk). ``max_side`` (0: full size) is the longer
    side the caller will shrink the image to: a JPEG at least twice that long is decoded at 1/2, 1/4 or 1/8 scale,
    never below ``max_side``, so its full-size pixels are never held.
    """
    size = image_size(data)
    if size is None:
        return None
    check_frame_size(*size, max_pixels, what)
    raw = data if isinstance(data, bytes) else data.read_bytes()
    flag = cv2.IMREAD_COLOR
    if max_side and raw.startswith(_JPEG_START):
        flag = next((f for scale, f in _JPEG_REDUCED if max(size) // scale >= max_side), flag)
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), flag)
    except cv2.error:  # a damaged file OpenCV gives up on with an exception rather than None
        return None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
