"""Inference stage: a torchvision Mask R-CNN turning RGB frames into ``Detections``.

Frames travel to the model's device as uint8 (a quarter of the bytes of
float32) and are converted and normalised there. The model is run in its
parts (transform, backbone, RPN, ROI heads) so that the class filter is applied
before masks are pasted into full-resolution images: pasting is the costly
step, and it is wasted on detections that are thrown away anyway.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol, Sequence

import numpy as np
import torch
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.models.detection.transform import resize_boxes

from rtseg.config import ModelConfig
from rtseg.errors import DeviceError, UsageError
from rtseg.models import load_model
from rtseg.structures import Detections

log = logging.getLogger(__name__)


class Detector(Protocol):
    """Anything that finds instances in a batch of RGB uint8 images (stubs in tests)."""

    class_names: tuple[str, ...]

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


def resolve_device(spec: str) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' → a usable torch.device, or a clear DeviceError."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec} was asked for, but no CUDA GPU is available (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec} does not exist: {torch.cuda.device_count()} CUDA GPU(s) found")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {spec!r} (use auto, cpu, cuda or cuda:N)")
    return device


def resolve_precision(spec: str, device: torch.device) -> torch.dtype:
    if spec == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if spec == "fp16" and device.type != "cuda":
        raise DeviceError("--precision fp16 needs a CUDA device; use fp32 on the CPU")
    return torch.float16 if spec == "fp16" else torch.float32


def class_ids_for(names: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """Indices of the named classes; an unknown name is a UsageError that suggests the closest ones."""
    import difflib

    ids = []
    known = [n for n in class_names if n not in ("__background__", "N/A")]
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(known)})"
            raise UsageError(f"unknown class name {name!r}{hint}")
        ids.append(list(class_names).index(name))
    return ids


class MaskRCNNDetector:
    """torchvision Mask R-CNN configured from ``ModelConfig`` (device, precision, thresholds, classes)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = resolve_precision(config.precision, self.device)
        loaded = load_model(
            config.name, config.weights,
            min_size=config.size, max_size=config.max_size,
            box_score_thresh=config.score_threshold,
            box_detections_per_img=config.detections_per_image,
            rpn_post_nms_top_n_test=config.rpn_post_nms_top_n,
        )
        self.class_names = loaded.class_names
        self.meta = loaded.meta
        self._keep_ids = (torch.tensor(class_ids_for(config.classes, self.class_names), device=self.device)
                          if config.classes else None)
        self.model = loaded.model.to(self.device).eval()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float16:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        tensors = [
            torch.from_numpy(image).to(self.device, non_blocking=True).permute(2, 0, 1).float().div_(255)
            for image in images
        ]
        original_sizes = [tuple(t.shape[-2:]) for t in tensors]
        model = self.model
        with self._autocast():
            batch, _ = model.transform(tensors)
            features = model.backbone(batch.tensors)
            proposals, _ = model.rpn(batch, features)
            raw, _ = model.roi_heads(features, proposals, batch.image_sizes)
        return [self._to_detections(r, in_size, out_size)
                for r, in_size, out_size in zip(raw, batch.image_sizes, original_sizes)]

    def _to_detections(self, raw: dict[str, torch.Tensor], model_size: tuple[int, int],
                       original_size: tuple[int, int]) -> Detections:
        labels = raw["labels"]
        keep = torch.isin(labels, self._keep_ids) if self._keep_ids is not None else slice(None)
        boxes = resize_boxes(raw["boxes"][keep].float(), model_size, original_size)
        masks = raw["masks"][keep].float()
        if len(boxes):
            masks = paste_masks_in_image(masks, boxes, original_size)[:, 0] > self.config.mask_threshold
        else:
            masks = torch.zeros((0, *original_size), dtype=torch.bool, device=self.device)
        return Detections(
            boxes=boxes.cpu().numpy().astype(np.float32),
            scores=raw["scores"][keep].float().cpu().numpy(),
            class_ids=labels[keep].cpu().numpy().astype(np.int64),
            masks=masks.cpu().numpy(),
            class_names=self.class_names,
        )
