"""COCO-format instance-segmentation data: reading annotation files and feeding images to Mask R-CNN.

Training and evaluation share this so both see the same images, the same class
order (category ids ascending, '__background__' first, which is how checkpoints
store class names) and the same one-line errors for broken data.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO

from rtseg.core.errors import DataError

BACKGROUND = "__background__"


def load_coco(path: str | Path) -> COCO:
    """A pycocotools COCO object for ``path``, with its console chatter silenced."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read annotation file {path}: {exc}") from exc
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data, dict) or key not in data]
    if missing:
        raise DataError(f"{path} is not a COCO instances file: no {', '.join(missing)}")
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def category_ids(coco: COCO) -> list[int]:
    return sorted(coco.getCatIds())


def class_names(coco: COCO) -> tuple[str, ...]:
    """Model class names for a data set: background, then categories by ascending id."""
    return (BACKGROUND, *(coco.cats[c]["name"] for c in category_ids(coco)))


class CocoInstances(torch.utils.data.Dataset[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Images and Mask R-CNN targets of a COCO file.

    Items are keyed by ``(index, flip)`` rather than drawing random numbers
    inside, so augmentation is decided by the sampler from a seed and a
    resumed run sees exactly the batches the interrupted one would have.
    Crowd annotations and empty boxes are left out of the targets.
    """

    def __init__(self, annotation_file: str | Path, images_dir: str | Path) -> None:
        self.coco = load_coco(annotation_file)
        self.images_dir = Path(images_dir)
        if not self.images_dir.is_dir():
            raise DataError(f"image folder not found: {self.images_dir}")
        self.image_ids = sorted(self.coco.getImgIds())
        if not self.image_ids:
            raise DataError(f"{annotation_file} lists no images")
        unknown = {a["category_id"] for a in self.coco.anns.values()} - set(self.coco.cats)
        if unknown:
            raise DataError(f"{annotation_file}: annotations use category ids missing from its categories: "
                            f"{sorted(unknown)[:5]}")
        self.class_names = class_names(self.coco)
        self.label_of = {cat: label for label, cat in enumerate(category_ids(self.coco), start=1)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def read_image(self, index: int) -> np.ndarray:
        """The RGB uint8 image at ``index``."""
        info = self.coco.imgs[self.image_ids[index]]
        path = self.images_dir / info["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"cannot read image {path}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __getitem__(self, key: tuple[int, bool] | int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, flip = key if isinstance(key, tuple) else (key, False)
        image = self.read_image(index)
        height, width = image.shape[:2]
        boxes, labels, masks = [], [], []
        for ann in self.coco.imgToAnns[self.image_ids[index]]:
            x, y, w, h = ann["bbox"]
            if ann.get("iscrowd", 0) or w < 1 or h < 1:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(self.label_of[ann["category_id"]])
            masks.append(self.coco.annToMask(ann))
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)),
        }
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
        if flip:
            tensor = tensor.flip(-1)
            target["masks"] = target["masks"].flip(-1)
            target["boxes"] = torch.stack([width - target["boxes"][:, 2], target["boxes"][:, 1],
                                           width - target["boxes"][:, 0], target["boxes"][:, 3]], 1)
        return tensor, target
