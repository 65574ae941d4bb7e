"""Segmentation masks as COCO run-length encodings (pycocotools), the format every COCO tool reads."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of one boolean (H, W) mask, with ``counts`` as a JSON-ready string."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """An RLE written by ``encode_mask`` as pycocotools takes it (``counts`` as bytes)."""
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """Boolean (H, W) mask from an RLE written by ``encode_mask``."""
    decoded: np.ndarray = mask_utils.decode(coco_rle(rle))
    return decoded.astype(bool)
