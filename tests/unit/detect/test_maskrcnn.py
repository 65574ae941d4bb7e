"""The Mask R-CNN worker on the CPU with seeded random weights: shapes, filters, devices."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rtseg.core.config import ModelConfig
from rtseg.core.errors import DeviceError, UsageError
from rtseg.detect.device import bf16_convolutions_supported, choose_precision, resolve_device, resolve_precision
from rtseg.detect.fusion import FusedConv
from rtseg.detect.maskrcnn import MaskRCNNDetector, class_ids_for
from rtseg.detect.models import COCO_CATEGORIES


def _detector(**overrides) -> MaskRCNNDetector:
    # Random weights score every box near 1/91; a zero threshold keeps the capped detections.
    settings = dict(weights="none", device="cpu", size=96, max_size=160, score_threshold=0.0, detections_per_image=5)
    config = dataclasses.replace(ModelConfig(), **{**settings, **overrides})
    return MaskRCNNDetector(config)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (72, 128, 3), dtype=np.uint8) for _ in range(2)]


def test_detections_are_at_source_resolution_with_boolean_masks(images):
    detector = _detector()
    results = detector.detect(images)
    assert len(results) == 2
    for det in results:
        assert len(det) == 5
        assert det.masks.shape == (5, 72, 128) and det.masks.dtype == bool
        assert det.boxes.shape == (5, 4) and det.boxes.dtype == np.float32
        assert (det.boxes[:, 2] <= 128 + 1e-3).all() and (det.boxes[:, 3] <= 72 + 1e-3).all()
        assert (det.scores >= 0).all() and det.class_names == COCO_CATEGORIES
        assert "N/A" not in det.names()  # random weights would pick torchvision's placeholders: they are dropped


def test_batch_equals_one_by_one(images):
    detector = _detector()
    together = detector.detect(images)
    alone = [detector.detect([image])[0] for image in images]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        assert (a.masks == b.masks).mean() > 0.999


def test_class_filter_keeps_only_named_classes(images):
    everything = _detector(detections_per_image=50).detect(images[:1])[0]
    present = everything.names()[0]
    only = _detector(detections_per_image=50, classes=[present]).detect(images[:1])[0]
    assert len(only) >= 1
    assert set(only.names()) == {present}
    assert len(only) == everything.names().count(present)


def test_score_threshold_applies(images):
    everything = _detector(detections_per_image=50).detect(images[:1])[0]
    threshold = float(np.median(everything.scores))
    kept = _detector(detections_per_image=50, score_threshold=threshold).detect(images[:1])[0]
    assert 0 < len(kept) < len(everything)
    assert (kept.scores >= threshold).all()
    assert len(kept) == int((everything.scores >= threshold).sum())
    nothing = _detector(score_threshold=1.0).detect(images[:1])[0]
    assert len(nothing) == 0 and nothing.masks.shape == (0, 72, 128)


def test_unknown_class_suggests_the_closest():
    with pytest.raises(UsageError, match=r"unknown class name 'cra' \(did you mean .*car"):
        class_ids_for(["cra"], COCO_CATEGORIES)
    assert class_ids_for(["person", "car"], COCO_CATEGORIES) == [1, 3]


def test_devices_and_precisions():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    assert resolve_precision("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU is available"):
            resolve_device("cuda:0")


@pytest.mark.parametrize("capabilities, dtype, name, reason", [
    ({"avx512_bf16": True, "amx_bf16": True}, torch.bfloat16, "bf16", "native bf16, AMX-BF16, AVX512-BF16"),
    ({"avx512_bf16": True}, torch.bfloat16, "bf16", "native bf16, AVX512-BF16;"),
    ({"avx512_bf16": False, "avx2": True}, torch.float32, "fp32", "no native bf16"),
])
def test_auto_precision_on_the_cpu_follows_what_torch_reports(monkeypatch, capabilities, dtype, name, reason):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    chosen, note = choose_precision("auto", torch.device("cpu"))
    assert chosen == dtype and note.startswith(f"precision {name} (auto: ") and reason in note
    assert choose_precision("fp32", torch.device("cpu")) == (torch.float32, "precision fp32 (as asked)")


def test_detector_says_which_precision_it_chose(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities",
                        lambda: {"amx_bf16": True, "avx512_bw": True, "avx512_vl": True, "avx512_dq": True})
    detector = _detector(precision="auto")
    assert detector.dtype == torch.bfloat16 and detector.precision_note.startswith("precision bf16 (auto: ")
    # bf16 on the CPU runs the rebuilt network (BatchNorm folded, bf16 weights); fp32 keeps torchvision's modules
    assert isinstance(detector.model.backbone.body.conv1, FusedConv)
    assert detector.model.backbone.body.conv1.weight.dtype == torch.bfloat16
    fp32 = _detector(precision="fp32").model.backbone.body
    assert isinstance(fp32.conv1, torch.nn.Conv2d) and fp32.conv1.weight.dtype == torch.float32


def test_class_agnostic_nms_keeps_the_likelier_of_overlapping_boxes_of_any_class(images):
    everything = _detector(detections_per_image=50, class_agnostic_nms=0.0).detect(images[:1])[0]
    agnostic = _detector(detections_per_image=50, class_agnostic_nms=0.3).detect(images[:1])[0]
    # Greedy NMS by hand over the per-class output, most confident first.
    kept: list[int] = []
    for i in np.argsort(-everything.scores, kind="stable"):
        b = everything.boxes[i]
        if all(_iou(b, everything.boxes[j]) <= 0.3 for j in kept):
            kept.append(int(i))
    assert 0 < len(agnostic) < len(everything)
    np.testing.assert_array_equal(agnostic.boxes, everything.boxes[kept])
    assert agnostic.names() == [everything.names()[i] for i in kept]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


@pytest.mark.parametrize("capabilities, supported", [
    ({"avx2": True}, False), ({"avx512_bw": True, "avx512_vl": True}, False),
    ({"avx512_bw": True, "avx512_vl": True, "avx512_dq": True}, True), ({"avx_ne_convert": True}, True)])
def test_bf16_on_a_cpu_that_cannot_convolve_in_bf16_is_refused_in_one_line(monkeypatch, capabilities, supported):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert bf16_convolutions_supported() == supported
    if supported:
        assert _detector(precision="bf16").dtype == torch.bfloat16
    else:
        with pytest.raises(DeviceError, match="^--precision bf16: this CPU cannot run bf16 convolutions .*use --precision fp32$"):
            _detector(precision="bf16")
