"""Building Mask R-CNN architectures and loading their weights, with clear failures.

Weights come from one of three places: torchvision's COCO weights through its own
download cache ('default'), a local file ('path/to/file.pt', loaded with
``weights_only=True`` so a pickle can never run code), or nowhere ('none', seeded
random initialisation for tests and benchmarks). A local file may be a bare
state dict or a checkpoint dict ``{"model": state_dict, "meta": {...}}`` whose
metadata names the architecture and the class names.
"""

from __future__ import annotations

import pickle
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import (
    MaskRCNN,
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    maskrcnn_resnet50_fpn,
    maskrcnn_resnet50_fpn_v2,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from rtseg.core.errors import WeightsError

COCO_CATEGORIES: tuple[str, ...] = tuple(MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
# torchvision keeps COCO's 91 category ids, so its list has "N/A" at the ids COCO never used, and index 0 is the
# background: neither is a class anyone can ask for, and no detection of them is ever shown (the detector drops them).
PLACEHOLDER_CLASSES = frozenset({"__background__", "N/A"})


def real_classes(class_names: tuple[str, ...] | list[str]) -> list[str]:
    """The class names a model can report and a user can name (``--classes``), in id order, placeholders left out."""
    return [name for name in class_names if name not in PLACEHOLDER_CLASSES]


def class_names_for(weights: str) -> tuple[str, ...]:
    """The class names (placeholders included, indexed by class id) of 'default', 'none' or a checkpoint file,
    without building the model or downloading anything: COCO's for torchvision's weights and random ones."""
    if weights in ("default", "none"):
        return COCO_CATEGORIES
    _, meta = read_checkpoint(weights)
    return tuple(meta.get("class_names", COCO_CATEGORIES))


@dataclass(frozen=True)
class Architecture:
    """How to build one named architecture and where its pretrained weights live."""

    build: Callable[..., MaskRCNN]
    pretrained: Any  # a torchvision WeightsEnum member, or None when there are none


def maskrcnn_resnet18_fpn(*, weights: Any = None, weights_backbone: Any = None, num_classes: int,
                          **detector_kwargs: Any) -> MaskRCNN:
    """Mask R-CNN on a ResNet-18 FPN: small enough to train from scratch on a 2-core CPU.

    There are no published weights for it, so it is always built untrained.
    Its defaults suit small images (shorter side 160 px, objects of 8-128 px).
    Narrower than torchvision's stock heads: the FPN and RPN run at 128
    channels (the same BackboneWithFPN that ``_resnet_fpn_extractor`` builds),
    the box head is a 512-wide MLP on 64 sampled RoIs per image, and the mask
    head has two 128-channel convolutions with BatchNorm; why, with the
    measurements, is in docs/configuration.md. Every default can be
    overridden by keyword.
    """
    if weights is not None or weights_backbone is not None:
        raise WeightsError("maskrcnn_r18 has no pretrained weights")
    channels = 128
    backbone = BackboneWithFPN(resnet18(weights=None), {f"layer{i}": str(i - 1) for i in range(1, 5)},
                               in_channels_list=[64, 128, 256, 512], out_channels=channels)
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    defaults = {
        "min_size": 160, "max_size": 267, "rpn_anchor_generator": anchors,
        "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500,
        "rpn_pre_nms_top_n_test": 500, "rpn_post_nms_top_n_test": 250,
        "box_batch_size_per_image": 64,
        "box_head": TwoMLPHead(channels * 7 * 7, 512),
        "box_predictor": FastRCNNPredictor(512, num_classes),
        "mask_head": MaskRCNNHeads(channels, (128, 128), 1, norm_layer=nn.BatchNorm2d),
        "mask_predictor": MaskRCNNPredictor(128, 128, num_classes),
    }
    return MaskRCNN(backbone, num_classes=None, **{**defaults, **detector_kwargs})


ARCHITECTURES: dict[str, Architecture] = {
    "maskrcnn_v1": Architecture(maskrcnn_resnet50_fpn, MaskRCNN_ResNet50_FPN_Weights.COCO_V1),
    "maskrcnn_v2": Architecture(maskrcnn_resnet50_fpn_v2, MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1),
    "maskrcnn_r18": Architecture(maskrcnn_resnet18_fpn, None),
}


@dataclass
class LoadedModel:
    model: MaskRCNN
    class_names: tuple[str, ...]
    meta: dict[str, Any]


def build_model(name: str, num_classes: int, **detector_kwargs: Any) -> MaskRCNN:
    """An untrained model of architecture ``name`` with ``num_classes`` outputs (background included)."""
    if name not in ARCHITECTURES:
        raise WeightsError(f"unknown model {name!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name].build(weights=None, weights_backbone=None, num_classes=num_classes, **detector_kwargs)


def _cache_path(weights: Any) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _download_state_dict(name: str) -> dict[str, torch.Tensor]:
    if name not in ARCHITECTURES:
        raise WeightsError(f"unknown model {name!r} (known: {', '.join(ARCHITECTURES)})")
    weights = ARCHITECTURES[name].pretrained
    if weights is None:
        raise WeightsError(f"{name} has no pretrained weights: pass --weights PATH for a checkpoint "
                           "trained with 'python -m rtseg train', or --weights none for random weights")
    try:
        state: dict[str, torch.Tensor] = weights.get_state_dict(progress=True, check_hash=True)
        return state
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise WeightsError(
            f"cannot get the COCO weights for {name}: not in the cache ({_cache_path(weights)}) and the download "
            f"failed ({exc.__class__.__name__}: {exc.reason if isinstance(exc, urllib.error.URLError) else exc}); copy {Path(weights.url).name} there, "
            "or pass --weights PATH for a local file (or --weights none for random weights)"
        ) from exc


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, meta) from a local file; refuses anything but tensors and plain data."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}")
    if not path.is_file():
        raise WeightsError(f"weights path is not a file: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise WeightsError(f"refusing to load {path}: it holds Python objects other than tensors "
                               "(only weights are loaded, never code)") from exc
        raise WeightsError(f"{path} is not a PyTorch checkpoint") from exc
    except Exception as exc:  # torch.load on arbitrary bytes can raise almost anything
        raise WeightsError(f"{path} is not a PyTorch checkpoint") from exc
    meta: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        saved_meta = data.get("meta")
        meta = saved_meta if isinstance(saved_meta, dict) else {}
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path} holds no model state dict")
    return data, meta


def max_size_for(size: int) -> int:
    """Longer-side cap for a shorter side ``size``, in torchvision's 800:1333 proportion."""
    return round(size * 1333 / 800)


def set_input_size(loaded: LoadedModel, size: int = 0, max_size: int = 0) -> tuple[int, int]:
    """Make the model resize to ``size`` (shorter side) capped at ``max_size``; 0 picks automatically.

    A size given wins; else a fine-tuned checkpoint's training size (its
    metadata's ``input_size``), so that such a model runs at the scale it
    learned without extra flags; else the architecture's default (800 for the
    ResNet-50 models). An automatic cap keeps torchvision's 800:1333 proportion
    and never falls below the architecture's own. Returns (size, max_size).
    """
    transform = loaded.model.transform
    trained = loaded.meta.get("input_size")
    if size:
        cap = max_size or max(max_size_for(size), transform.max_size)
    elif trained:
        size, cap = int(trained), max_size or max_size_for(int(trained))
    else:
        size, cap = transform.min_size[-1], max_size or transform.max_size
    transform.min_size, transform.max_size = (size,), cap
    return size, cap


def load_model(name: str, weights: str, **detector_kwargs: Any) -> LoadedModel:
    """Build architecture ``name`` and fill it with ``weights`` ('default', 'none' or a path).

    A checkpoint's own metadata wins over ``name`` for the architecture and
    class names, so a fine-tuned model needs no extra flags.
    """
    if weights == "none":
        torch.manual_seed(0)
        model = build_model(name, len(COCO_CATEGORIES), **detector_kwargs)
        return LoadedModel(model.eval(), COCO_CATEGORIES, {"architecture": name, "weights": "none"})
    if weights == "default":
        state, meta = _download_state_dict(name), dict[str, Any]()
        class_names = COCO_CATEGORIES
    else:
        state, meta = read_checkpoint(weights)
        name = meta.get("architecture", name)
        class_names = tuple(meta.get("class_names", COCO_CATEGORIES))
    model = build_model(name, len(class_names), **detector_kwargs)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise WeightsError(f"weights {weights} do not fit architecture {name}: {first[:200]}") from exc
    meta = {**meta, "architecture": name, "weights": weights}
    return LoadedModel(model.eval(), class_names, meta)
