"""The Mask R-CNN detector: a torchvision Mask R-CNN turning RGB frames into ``Detections``.

The model is torchvision's, weights and modules unchanged, but its inference
forward pass is driven here step by step so that the work around the network
costs as little as possible and never changes the answer:

- frames travel to the device as uint8 (through a reused pinned buffer on CUDA)
  and are normalised and resized there, a whole batch at once;
- reduced precision covers the network (convolutions, linear layers, RoIAlign
  on the CPU): anchors, box decoding, NMS and mask pasting stay in float32,
  because bf16 coordinates are 4 px coarse at x = 1000 (fp16: 0.5 px);
- bf16 on the CPU runs the network rebuilt by ``fuse_for_cpu`` (BatchNorm
  folded, ReLU and residual adds fused into oneDNN convolutions, weights
  stored in bf16) and pools RoIs straight from the bf16 channels-last maps
  (``pool_rois``); float32, and CUDA, keep torchvision's modules, and their
  feature maps are converted once to the contiguous float32 that
  torchvision's RoIAlign works on, not once per level and head;
- NMS after the box head only decides the ``detections_per_image`` best boxes
  (see ``best_after_nms``), the class filter runs before the mask head, and
  masks are pasted for the survivors only, each resized within its own box
  and thresholded there (see ``paste_masks``).

``last_timings`` holds the preprocess / model / postprocess split of the last
call, for the pipeline's per-stage summary and the benchmark.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops

from rtseg.core.config import ModelConfig
from rtseg.core.errors import ConfigError, DeviceError, UsageError
from rtseg.core.structures import Detections
from rtseg.detect.base import DetectorBase
from rtseg.detect.device import bf16_convolutions_supported, choose_precision, resolve_device
from rtseg.detect.fusion import fuse_for_cpu
from rtseg.detect.models import PLACEHOLDER_CLASSES, load_model, real_classes, set_input_size
from rtseg.detect.ops import best_after_nms, paste_masks, pool_rois

log = logging.getLogger(__name__)

TIMED_STEPS = ("preprocess", "model", "postprocess")


def class_ids_for(names: Sequence[str], class_names: Sequence[str]) -> list[int]:
    """Indices of the named classes; an unknown name is a UsageError that suggests the closest ones."""
    import difflib

    ids = []
    known = real_classes(list(class_names))
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else f" (known: {', '.join(known)})"
            raise UsageError(f"unknown class name {name!r}{hint}")
        ids.append(list(class_names).index(name))
    return ids


class MaskRCNNDetector(DetectorBase):
    """torchvision Mask R-CNN configured from ``ModelConfig`` (device, precision, thresholds, classes).

    ``sync_timings`` makes ``last_timings`` exact on CUDA by synchronising
    between steps; without it nothing waits on the GPU for the sake of timing.
    """

    def __init__(self, config: ModelConfig, *, sync_timings: bool = False) -> None:
        for key, value in (("size", config.size), ("max_size", config.max_size)):
            if 0 < value < 32:
                raise ConfigError(f"model.{key} must be 0 (automatic) or at least 32, got {value}")
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype, self.precision_note = choose_precision(config.precision, self.device)
        log.debug("%s; CPU capability %s", self.precision_note, torch.backends.cpu.get_cpu_capability())
        self.sync_timings = sync_timings
        if config.threads and self.device.type == "cpu":
            torch.set_num_threads(config.threads)  # process-wide: the model is what torch runs here
        proposals = {"rpn_post_nms_top_n_test": config.rpn_post_nms_top_n} if config.rpn_post_nms_top_n else {}
        loaded = load_model(
            config.name, config.weights,
            box_score_thresh=config.score_threshold,
            box_detections_per_img=config.detections_per_image,
            **proposals,
        )
        self.class_names = loaded.class_names
        self.meta = loaded.meta
        self.size, self.max_size = set_input_size(loaded, config.size, config.max_size)
        self._keep_ids = (torch.tensor(class_ids_for(config.classes, self.class_names), device=self.device)
                          if config.classes else None)
        # torchvision's "N/A" placeholder ids are never reported: their scores are zeroed before the threshold and
        # the per-image cap, so random weights (which would pick them) fill the cap with real classes, as a COCO
        # model (which never predicts them) does.
        placeholders = [i for i, name in enumerate(self.class_names) if i and name in PLACEHOLDER_CLASSES]
        self._placeholder_ids = torch.tensor(placeholders, device=self.device) if placeholders else None
        model = loaded.model.to(self.device).eval()
        # CUDA fp16 is autocast unless model.fp16_weights asks for model.half(): half weights skip the per-call
        # casts and halve weight memory but compute every layer in fp16, where autocast keeps touchy ops in fp32
        # (box decoding and NMS stay float32 either way); docs/benchmarks.md has the command that decides it.
        self._half_weights = self.dtype == torch.float16 and config.fp16_weights
        if self._half_weights:
            model.half()
        reduced_on_cpu = self.device.type == "cpu" and self.dtype == torch.bfloat16
        if reduced_on_cpu and not bf16_convolutions_supported():
            raise DeviceError("--precision bf16: this CPU cannot run bf16 convolutions (oneDNN needs AVX512-BW/VL/DQ "
                              "or AVX-NE-CONVERT); use --precision fp32")
        if reduced_on_cpu:
            fuse_for_cpu(model, self.dtype)
        heads = model.roi_heads
        self._gather_pooling = reduced_on_cpu and all(
            isinstance(p, MultiScaleRoIAlign) and p.sampling_ratio > 0 for p in (heads.box_roi_pool, heads.mask_roi_pool))
        self._memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self._memory_format)
        mean = torch.tensor(model.transform.image_mean, device=self.device)
        std = torch.tensor(model.transform.image_std, device=self.device)
        self._pixel_mean = (255 * mean).view(1, 3, 1, 1)
        self._pixel_inv_std = (1 / (255 * std)).view(1, 3, 1, 1)
        self._pinned: torch.Tensor | None = None
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # frame sizes are fixed per source, so tuning pays off

    # -- public ---------------------------------------------------------------------------------

    def warm_up(self, height: int, width: int, batch_size: int) -> None:
        """On CUDA, run the shapes of the source once so cuDNN's autotuning is not charged to real frames.

        On the CPU the first real frame warms up as well as a blank one would, so nothing is run.
        """
        if self.device.type != "cuda":
            return
        blank = np.zeros((height, width, 3), np.uint8)
        for count in {1, batch_size}:
            self.detect([blank] * count)

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        if len({image.shape for image in images}) > 1:  # one batch needs one frame size
            results, totals = [], dict.fromkeys(TIMED_STEPS, 0.0)
            for image in images:
                results += self.detect([image])
                for step in TIMED_STEPS:
                    totals[step] += self.last_timings[step]
            self.last_timings = totals
            return results
        started = time.perf_counter()
        batch = self.preprocess(images)
        preprocessed = self._clock()
        found = self.find(batch)
        modelled = self._clock()
        results = self.to_detections(found, batch.image_sizes, images[0].shape[:2])
        self.last_timings = {"preprocess": preprocessed - started, "model": modelled - preprocessed,
                             "postprocess": self._clock() - modelled}
        return results

    # -- steps (public so that the benchmark can time each against torchvision's own) ------------

    def _clock(self) -> float:
        if self.sync_timings and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.dtype == torch.float32 or self._half_weights:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _upload(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, H, W, 3) uint8 on the device; on CUDA copied from a pinned buffer that is reused.

        Reusing the buffer is safe because every ``detect`` ends by downloading
        its boxes, which waits for the copy to have happened.
        """
        if self.device.type == "cpu":
            return torch.from_numpy(images[0][None] if len(images) == 1 else np.stack(images))
        shape = (len(images), *images[0].shape)
        if self._pinned is None or self._pinned.shape[1:] != shape[1:] or len(self._pinned) < len(images):
            self._pinned = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        host = self._pinned[: len(images)]
        for slot, image in zip(host, images):
            slot.copy_(torch.from_numpy(image))
        return host.to(self.device, non_blocking=True)

    def preprocess(self, images: Sequence[np.ndarray]) -> ImageList:
        """torchvision's transform (normalise, then resize the shorter side to ``size``, pad to 32) on uint8 input."""
        height, width = images[0].shape[:2]
        pixels = self._upload(images).permute(0, 3, 1, 2).to(torch.float32)
        pixels = pixels.sub_(self._pixel_mean).mul_(self._pixel_inv_std)
        scale = min(self.size / min(height, width), self.max_size / max(height, width))
        size = (int(height * scale), int(width * scale))  # what interpolate's recompute_scale_factor gives
        if size != (height, width):
            pixels = F.interpolate(pixels, scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                                   align_corners=False)
        stride = self.model.transform.size_divisible
        padded_size = (-(-size[0] // stride) * stride, -(-size[1] // stride) * stride)
        padded = torch.zeros((len(images), 3, *padded_size), device=self.device,
                             dtype=torch.float16 if self._half_weights else torch.float32)
        padded = padded.contiguous(memory_format=self._memory_format)
        padded[:, :, : size[0], : size[1]].copy_(pixels)
        return ImageList(padded, [size] * len(images))

    def _proposals(self, batch: ImageList, maps: list[torch.Tensor], objectness: list[torch.Tensor],
                   deltas: list[torch.Tensor]) -> list[torch.Tensor]:
        """The RPN's proposals, decoded and filtered in float32 whatever the network's precision."""
        rpn = self.model.rpn
        # AnchorGenerator takes its dtype from the maps it is given: float32 stand-ins keep anchors exact.
        shapes = [torch.empty((0, 0, *m.shape[-2:]), device=self.device) for m in maps]
        anchors = rpn.anchor_generator(batch, shapes)
        per_level = [o[0].numel() for o in objectness]
        scores, offsets = concat_box_prediction_layers(objectness, deltas)
        proposals = rpn.box_coder.decode(offsets.to(torch.float32), anchors).view(len(anchors), -1, 4)
        boxes: list[torch.Tensor]
        boxes, _ = rpn.filter_proposals(proposals, scores.to(torch.float32), batch.image_sizes, per_level)
        return boxes

    def best_boxes(self, class_logits: torch.Tensor, box_regression: torch.Tensor, proposals: list[torch.Tensor],
                    image_sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """RoIHeads.postprocess_detections with ``best_after_nms``, then the class filter and the optional
        class-agnostic NMS (``model.class_agnostic_nms``): (boxes, scores, labels)."""
        heads = self.model.roi_heads
        counts = [len(p) for p in proposals]
        boxes_all = heads.box_coder.decode(box_regression.to(torch.float32), proposals)
        scores_all = F.softmax(class_logits.to(torch.float32), -1)
        if self._placeholder_ids is not None:
            scores_all[:, self._placeholder_ids] = 0.0  # never above any threshold (kept strictly above it)
        classes = scores_all.shape[-1]
        found = []
        for boxes, scores, size in zip(boxes_all.split(counts), scores_all.split_with_sizes(counts), image_sizes):
            boxes = box_ops.clip_boxes_to_image(boxes, size)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, classes, device=self.device).repeat(len(scores))
            scores = scores[:, 1:].reshape(-1)
            keep = torch.where(scores > heads.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = best_after_nms(boxes, scores, labels, heads.nms_thresh, heads.detections_per_img)
            if self._keep_ids is not None:
                keep = keep[torch.isin(labels[keep], self._keep_ids)]
            if self.config.class_agnostic_nms:  # one object boxed under two classes: keep the likelier
                keep = keep[box_ops.nms(boxes[keep], scores[keep], self.config.class_agnostic_nms)]
            found.append((boxes[keep], scores[keep], labels[keep]))
        return found

    def _head_input(self, pooled: torch.Tensor) -> torch.Tensor:
        """RoIAlign's float32 output in the dtype the heads' weights expect (autocast casts it itself)."""
        return pooled.half() if self._half_weights else pooled

    def _pool(self, pooler: MultiScaleRoIAlign, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
              image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """RoIAlign for a head, as input for it: bf16 straight from the bf16 maps on the CPU, else torchvision's."""
        if self._gather_pooling:
            return pool_rois(pooler, features, boxes, image_sizes)
        return self._head_input(pooler(features, boxes, image_sizes))

    def find(self, batch: ImageList) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Boxes, scores, labels and (N, 28, 28) mask probabilities per image, in model-input coordinates."""
        model, heads = self.model, self.model.roi_heads
        with self._autocast():
            features = model.backbone(batch.tensors)
            maps = list(features.values())
            objectness, deltas = model.rpn.head(maps)
        proposals = self._proposals(batch, maps, objectness, deltas)
        if not self._gather_pooling:  # torchvision's RoIAlign works on contiguous float32 maps
            features = {name: m.to(torch.float32, memory_format=torch.contiguous_format)
                        for name, m in features.items()}
        pooled = self._pool(heads.box_roi_pool, features, proposals, batch.image_sizes)
        with self._autocast():
            class_logits, box_regression = heads.box_predictor(heads.box_head(pooled))
        found = self.best_boxes(class_logits, box_regression, proposals, batch.image_sizes)
        boxes = [b for b, _, _ in found]
        labels = [lab for _, _, lab in found]
        if sum(len(b) for b in boxes) == 0:
            empty = torch.zeros((0, 28, 28), device=self.device)
            return [(b, s, lab, empty) for b, s, lab in found]
        pooled = self._pool(heads.mask_roi_pool, features, boxes, batch.image_sizes)
        with self._autocast():
            mask_logits = heads.mask_predictor(heads.mask_head(pooled))
        # Only each detection's own class is kept: selected before the sigmoid and the float32 cast, same values.
        chosen = mask_logits[torch.arange(len(mask_logits), device=self.device), torch.cat(labels)]
        masks = chosen.to(torch.float32).sigmoid().split_with_sizes([len(lab) for lab in labels])
        return [(b, s, lab, m) for (b, s, lab), m in zip(found, masks)]

    def to_detections(self, found: Sequence[tuple[torch.Tensor, ...]], model_sizes: list[tuple[int, int]],
                       original_size: tuple[int, int]) -> list[Detections]:
        """Boxes back at source resolution, masks pasted, and one download of every small array.

        On the CPU masks become numpy arrays; on CUDA they stay on the GPU as
        torch tensors, so the renderer composes the overlay there.
        """
        pasted, rows = [], []
        for (boxes, scores, labels, probabilities), model_size in zip(found, model_sizes):
            boxes = resize_boxes(boxes, model_size, original_size)
            pasted.append(paste_masks(probabilities, boxes, original_size, self.config.mask_threshold))
            rows.append(torch.cat([boxes, scores[:, None], labels[:, None].to(torch.float32)], 1))
        host = torch.cat(rows).cpu().numpy()
        results, start = [], 0
        for masks in pasted:
            part = host[start: start + len(masks)]
            start += len(masks)
            results.append(Detections(
                boxes=part[:, :4].copy(), scores=part[:, 4].copy(), class_ids=part[:, 5].astype(np.int64),
                masks=masks.cpu().numpy() if self.device.type == "cpu" else masks, class_names=self.class_names,
            ))
        return results
