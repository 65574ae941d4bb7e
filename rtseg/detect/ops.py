"""Tensor operations of the worker: exact top-k NMS, batched mask pasting, and RoIAlign as a weighted gather."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import expand_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops
from torchvision.ops.poolers import _filter_input, _setup_scales

_PASTE_CHUNK_BYTES = 64 << 20  # bounds the float32 scratch of ``paste_masks`` (8 full-HD masks)


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
    return box_ops.batched_nms(boxes, scores, labels, iou_threshold)[:limit]


def _interpolation_weights(span: torch.Tensor, length: int, source: int) -> torch.Tensor:
    """(N, length, source): 1-D bilinear weights (align_corners=False) resizing ``source`` samples to ``span``
    pixels (at least one), computed as PyTorch's upsampling kernels do, in float32; zero past ``span``."""
    positions = torch.arange(length, device=span.device, dtype=torch.float32)[None, :]
    inside = (positions < span[:, None]).to(torch.float32)
    ratio = (source / span.to(torch.float32))[:, None]
    where = ((positions + 0.5) * ratio - 0.5).clamp(min=0)
    lower = where.floor().clamp(max=source - 1)
    upper = (lower + 1).clamp(max=source - 1)
    fraction = (where - lower).clamp(0, 1) * inside
    weights = torch.zeros((len(span), length, source), device=span.device)
    weights.scatter_add_(2, lower.long()[..., None], (inside - fraction)[..., None])
    weights.scatter_add_(2, upper.long()[..., None], fraction[..., None])
    return weights


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                threshold: float) -> torch.Tensor:
    """(N, H, W) booleans from (N, M, M) box-relative mask probabilities, in a few batched operations.

    Same pixels as torchvision's ``paste_masks_in_image(...) > threshold``: the
    mask is padded by one pixel, the box expanded by (M + 2) / M and truncated to
    integers, and the padded mask resized bilinearly to the box. Bilinear
    resizing is separable, so all masks are resized at once as
    ``rows @ mask @ cols.T`` over the largest box, thresholded there, and
    written into the frame with one indexed store, instead of a Python loop
    that allocates and fills a float frame per detection. Chunked so that the
    scratch memory stays bounded.
    """
    count, size = len(masks), masks.shape[-1]
    height, width = image_size
    pasted = torch.zeros(count * height * width + 1, dtype=torch.bool, device=masks.device)  # last: a dump slot
    if count == 0:
        return pasted[:-1].view(0, height, width)
    padded = F.pad(masks.to(torch.float32), (1, 1, 1, 1))
    boxes = expand_boxes(boxes.to(torch.float32), (size + 2) / size).to(torch.int64)
    x0, y0, x1, y1 = boxes.unbind(1)
    spans_y, spans_x = (y1 - y0 + 1).clamp(min=1), (x1 - x0 + 1).clamp(min=1)
    box_height, box_width = int(spans_y.max()), int(spans_x.max())  # the one host sync of pasting
    local_y = torch.arange(box_height, device=masks.device)
    local_x = torch.arange(box_width, device=masks.device)
    step = max(1, _PASTE_CHUNK_BYTES // (12 * box_height * box_width))  # float32 product + int64 index
    for start in range(0, count, step):
        part = slice(start, start + step)
        rows = _interpolation_weights(spans_y[part], box_height, size + 2)
        cols = _interpolation_weights(spans_x[part], box_width, size + 2).transpose(1, 2)
        inside = torch.bmm(rows, torch.bmm(padded[part], cols)) > threshold
        ys = y0[part, None] + local_y  # (n, box_height) frame rows; torchvision writes rows y0..y1 inside the frame
        xs = x0[part, None] + local_x
        rows_ok = (ys <= y1[part, None]) & (ys >= 0) & (ys < height)
        cols_ok = (xs <= x1[part, None]) & (xs >= 0) & (xs < width)
        first = torch.arange(start, start + len(ys), device=masks.device)[:, None, None] * (height * width)
        index = first + ys[:, :, None] * width + xs[:, None, :]
        index = torch.where(rows_ok[:, :, None] & cols_ok[:, None, :], index, count * height * width)
        pasted[index.view(-1)] = inside.view(-1)
    return pasted[:-1].view(count, height, width)


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
