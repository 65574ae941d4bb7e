"""The bf16 CPU path's pieces against torchvision's own: RoIAlign by gathering, the fused network."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from rtseg.detect.device import bf16_convolutions_supported
from rtseg.detect.fusion import fuse_for_cpu
from rtseg.detect.models import load_model
from rtseg.detect.ops import pool_rois


def _maps(batch: int, height: int, width: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {str(level): torch.randn((batch, 8, height >> (level + 2), width >> (level + 2)), generator=generator)
            .to(dtype).contiguous(memory_format=torch.channels_last) for level in range(4)}


def _boxes(count: int, height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand((count, 2), generator=generator) * torch.tensor([width, height])
    size = torch.rand((count, 2), generator=generator) ** 2 * width / 2 + 0.1
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes = torch.min(torch.cat([corner, corner + size], 1), limit)
    boxes[0] = limit * torch.tensor([0, 0, 1, 1])  # the whole image: its samples reach the maps' last row
    boxes[1] = limit - torch.tensor([3.0, 2.0, 0.0, 0.0])  # a sliver at the far corner
    return boxes


def test_gathered_roi_align_equals_torchvision_for_every_level_and_image():
    height, width = 128, 192
    maps = _maps(2, height, width)
    boxes = [_boxes(60, 120, 192, seed) for seed in (1, 2)]
    for output_size in (7, 14):
        pooler = MultiScaleRoIAlign(list(maps), output_size, 2)
        expected = pooler({k: v.contiguous() for k, v in maps.items()}, boxes, [(120, 192)] * 2)
        pooled = pool_rois(pooler, maps, boxes, [(120, 192)] * 2)
        assert pooled.shape == expected.shape == (120, 8, output_size, output_size)
        torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)


def test_gathered_roi_align_in_bf16_stays_within_bf16_rounding():
    maps = _maps(1, 128, 192, torch.bfloat16)
    boxes = [_boxes(40, 128, 192, 3)]
    pooler = MultiScaleRoIAlign(list(maps), 7, 2)
    expected = pooler({k: v.float().contiguous() for k, v in maps.items()}, boxes, [(128, 192)])
    pooled = pool_rois(pooler, maps, boxes, [(128, 192)])
    assert pooled.dtype == torch.bfloat16
    assert ((pooled.float() - expected).abs() <= 0.02 * expected.abs().max()).all()
    assert (pooled.float() - expected).abs().mean() < 0.01 * expected.abs().mean()


def test_gathered_roi_align_without_boxes():
    maps = _maps(1, 64, 64)
    pooler = MultiScaleRoIAlign(list(maps), 7, 2)
    assert pool_rois(pooler, maps, [torch.zeros((0, 4))], [(64, 64)]).shape == (0, 8, 7, 7)


@pytest.mark.skipif(not bf16_convolutions_supported(), reason="this CPU's oneDNN runs no bf16 convolutions")
def test_fused_network_gives_the_unfused_networks_features_within_bf16_rounding():
    reference = load_model("maskrcnn_r18", "none").model.eval()
    fused = load_model("maskrcnn_r18", "none").model.eval()
    generator = torch.Generator().manual_seed(0)
    for ours, theirs in zip(reference.modules(), fused.modules()):
        if isinstance(ours, torch.nn.BatchNorm2d):  # statistics away from the identity, so folding is exercised
            for name in ("running_mean", "running_var", "weight", "bias"):
                value = torch.rand(getattr(ours, name).shape, generator=generator) * 0.5 + 0.75
                getattr(ours, name).data.copy_(value)
                getattr(theirs, name).data.copy_(value)
    fuse_for_cpu(fused, torch.bfloat16)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.backbone.modules())
    image = torch.randn((1, 3, 96, 128), generator=generator)
    with torch.inference_mode():
        expected = reference.backbone(image)
        found = fused.backbone(image)
    assert list(found) == list(expected)
    for name, features in expected.items():
        assert found[name].dtype == torch.bfloat16
        assert (found[name].float() - features).norm() <= 0.03 * features.norm()
