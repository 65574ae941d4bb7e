"""What a training run learns (``TrainConfig``): training's own settings, beside the training code.

They are validated like the sections of ``rtseg.core.config.Config`` (same
``setting`` metadata), but they are not one of them: the runtime never reads
them, and ``configs/default.yaml`` does not hold them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtseg.core.config import setting


@dataclass
class TrainConfig:
    """What a training run (``rtseg train``) learns; saved in last.pt so that --resume reuses it unchanged.

    Validated like the sections of ``Config`` but not one of them (nor in
    configs/default.yaml): ``rtseg train`` takes it from its flags, or from the
    last.pt it resumes, and reads no config file. ``None`` = worked out from the
    data when the run starts.
    """

    data: str = setting("", "COCO instances JSON of the training split (required)")
    images: str = setting("", "folder with the training images (required)")
    output_dir: str = setting("", "folder for last.pt, best.pt and log.jsonl (required)")
    val_data: str | None = setting(None, "COCO instances JSON of the validation split (best.pt is chosen on it)")
    val_images: str | None = setting(None, "folder with the validation images (None = images)")
    model: str = setting("maskrcnn_r18", "architecture", choices=("maskrcnn_v1", "maskrcnn_v2", "maskrcnn_r18"))
    weights: str = setting("default", "'default' (torchvision COCO weights), a checkpoint path, or 'none' (random)")
    epochs: int | None = setting(None, "passes over the training set (None = 12 unless iterations is set)", min=1)
    iterations: int | None = setting(None, "optimizer steps, instead of epochs", min=1)
    batch_size: int = setting(4, "images per step", min=1)
    lr: float | None = setting(None, "peak learning rate (None = SGD 0.02 x batch size / 16, AdamW 2e-4)", above=0.0)
    optimizer: str = setting("sgd", "sgd (the torchvision fine-tuning recipe) or adamw", choices=("sgd", "adamw"))
    momentum: float = setting(0.9, "SGD momentum", min=0.0, below=1.0)
    weight_decay: float = setting(1e-4, "weight decay", min=0.0)
    clip_grad: float | None = setting(None, "cap on the gradients' global norm (None = no clipping)", above=0.0)
    warmup_iters: int = setting(100, "iterations of linear learning-rate warm-up", min=0)
    schedule: str = setting("cosine", "learning-rate decay after warm-up", choices=("cosine", "step"))
    lr_steps: list[float] = setting([0.7, 0.9], "schedule step: increasing fractions of the run where the rate drops 10x",
                                     above=0.0, below=1.0)
    size: int | None = setting(None, "shorter image side (None = the images' median shorter side, at most 800)",
                                min=32, max=4096)
    scale_jitter: float = setting(0.25, "train at sizes up to this fraction above and below size (0 = off)",
                                   min=0.0, below=1.0)
    hflip: float = setting(0.5, "probability of a horizontal flip", min=0.0, max=1.0)
    trainable_layers: int | None = setting(None, "ResNet stages trained, from the top (None = 3 pretrained, 5 random)",
                                            min=0, max=5)
    eval_every: int | None = setting(None, "evaluate and save last.pt every N iterations (None = each epoch)", min=1)
    seed: int = setting(0, "seed of the initial weights, data order and augmentation")
