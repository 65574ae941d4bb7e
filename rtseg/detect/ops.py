"""Tensor operations of the worker: exact top-k NMS, mask pasting bounded by the boxes, RoIAlign as a weighted gather."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops
from torchvision.ops.poolers import _filter_input, _setup_scales


def best_after_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float,
                   limit: int) -> torch.Tensor:
    """``batched_nms(boxes, scores, labels, iou_threshold)[:limit]``, without suppressing the whole list.

    Whether per-class NMS keeps a box depends only on the higher-scoring boxes
    of its class, so NMS over the k best candidates decides those k exactly;
    once it keeps ``limit`` of them they are the answer. Low score thresholds
    leave thousands of candidates (90 classes x 1000 proposals at threshold 0),
    of which only the best few matter.
    """
    count = len(scores)
    k = 4 * limit
    while k < count:
        top = scores.topk(k).indices
        keep = box_ops.batched_nms(boxes[top], scores[top], labels[top], iou_threshold)
        if len(keep) >= limit:
            return top[keep[:limit]]
        k *= 4
    kept: torch.Tensor = box_ops.batched_nms(boxes, scores, labels, iou_threshold)
    return kept[:limit]


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                threshold: float) -> torch.Tensor:
    """(N, H, W) booleans from (N, M, M) box-relative mask probabilities: torchvision's pixels, at the boxes' cost.

    The same operations as torchvision's ``paste_masks_in_image(...) > threshold``
    (the mask padded by one pixel, the box expanded by (M + 2) / M and truncated
    to integers, the padded mask resized bilinearly to the box), but each mask is
    resized to its own box, thresholded there and written into its frame as a
    slice: work and scratch memory grow with the boxes' areas, not with
    detections x frame size, and no float frame is allocated per detection.
    """
    count, size = len(masks), masks.shape[-1]
    height, width = image_size
    pasted = torch.zeros((count, height, width), dtype=torch.bool, device=masks.device)
    if count == 0:
        return pasted
    padded = F.pad(masks.to(torch.float32), (1, 1, 1, 1))[:, None]
    boxes = expand_boxes(boxes.to(torch.float32), (size + 2) / size).to(torch.int64)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):  # the one host sync of pasting
        top, bottom, left, right = max(y0, 0), min(y1 + 1, height), max(x0, 0), min(x1 + 1, width)
        if top >= bottom or left >= right:
            continue
        box_size = (max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1))
        resized = F.interpolate(padded[i: i + 1], size=box_size, mode="bilinear", align_corners=False)[0, 0]
        pasted[i, top:bottom, left:right] = resized[top - y0: bottom - y0, left - x0: right - x0] > threshold
    return pasted


def _sample_axis(start: torch.Tensor, end: torch.Tensor, bins: int, grid: int,
                 size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, bins, 2 * grid) feature-map indices and bilinear weights along one axis of each RoI.

    The sample positions and weights of torchvision's RoIAlign (``aligned=False``):
    ``grid`` samples per bin, a sample more than one pixel outside the map weighs
    nothing, one on the last row or before the first is clamped to it.
    """
    length = (end - start).clamp(min=1.0)
    bin_size = (length / bins)[:, None, None]
    bin_start = start[:, None, None] + torch.arange(bins, device=start.device)[None, :, None] * bin_size
    where = bin_start + (torch.arange(grid, device=start.device)[None, None, :] + 0.5) * bin_size / grid
    size = size[:, None, None]
    valid = ((where >= -1.0) & (where <= size)).to(torch.float32)
    where = where.clamp(min=0)
    low = torch.minimum(where.floor(), size - 1)
    at_end = low >= size - 1
    where = torch.where(at_end, low, where)
    high = torch.where(at_end, low, low + 1)
    fraction = where - low
    weights = torch.stack([(1 - fraction) * valid, fraction * valid], -1).flatten(2)
    return torch.stack([low, high], -1).flatten(2).to(torch.int64), weights


def pool_rois(pooler: MultiScaleRoIAlign, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
              image_sizes: list[tuple[int, int]]) -> torch.Tensor:
    """``pooler(features, boxes, image_sizes)`` as one ``embedding_bag`` over channels-last maps, in their dtype.

    Each output bin is a weighted sum of ``4 * sampling_ratio**2`` feature vectors
    (bilinear corners of its samples), so RoIAlign is a weighted gather of whole
    channel vectors from the (pixels, channels) table that channels-last maps
    already are: vectorised, multi-threaded and in bf16, where torchvision's CPU
    kernel loops over channels one scalar at a time on one thread and needs
    contiguous float32 maps. Same samples and weights as torchvision's; only the
    summation order differs (bf16: the weights are rounded to bf16 too). Needs a
    fixed ``sampling_ratio``. Returns (R, C, h, w) in channels-last memory order.
    """
    maps = _filter_input(features, pooler.featmap_names)
    if pooler.scales is None or pooler.map_levels is None:
        pooler.scales, pooler.map_levels = _setup_scales(maps, image_sizes, pooler.canonical_scale,
                                                         pooler.canonical_level)
    out_h, out_w = pooler.output_size
    grid = pooler.sampling_ratio
    device, dtype, channels = maps[0].device, maps[0].dtype, maps[0].shape[1]
    rois = torch.cat(boxes)
    if not len(rois):
        return torch.zeros((0, channels, out_h, out_w), device=device, dtype=dtype)
    images = torch.cat([torch.full((len(b),), i, device=device) for i, b in enumerate(boxes)])
    levels = pooler.map_levels(boxes) if len(maps) > 1 else torch.zeros(len(rois), dtype=torch.int64, device=device)
    heights = torch.tensor([m.shape[2] for m in maps], device=device)
    widths = torch.tensor([m.shape[3] for m in maps], device=device)
    offsets = torch.tensor([0] + [m[:, 0].numel() for m in maps[:-1]], device=device).cumsum(0)
    table = torch.cat([m.permute(0, 2, 3, 1).reshape(-1, channels) for m in maps]).to(dtype)
    scale = torch.tensor(pooler.scales, device=device)[levels][:, None]
    x1, y1, x2, y2 = (rois * scale).unbind(1)
    height, width = heights[levels], widths[levels]
    rows, row_weights = _sample_axis(y1, y2, out_h, grid, height.to(torch.float32))
    cols, col_weights = _sample_axis(x1, x2, out_w, grid, width.to(torch.float32))
    first = (offsets[levels] + images * height * width)[:, None, None, None, None]
    index = first + rows[:, :, None, :, None] * width[:, None, None, None, None] + cols[:, None, :, None, :]
    weight = row_weights[:, :, None, :, None] * col_weights[:, None, :, None, :] / (grid * grid)
    per_bin = (2 * grid) ** 2
    pooled = F.embedding_bag(index.reshape(-1, per_bin), table, mode="sum",
                             per_sample_weights=weight.reshape(-1, per_bin).to(dtype))
    return pooled.view(len(rois), out_h, out_w, channels).permute(0, 3, 1, 2)
