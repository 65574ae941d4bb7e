"""Train or fine-tune Mask R-CNN on a COCO-format instance-segmentation data set.

Starts from torchvision's COCO weights, a local checkpoint or random weights,
swaps the box and mask predictors for the data set's classes, and trains with
SGD or AdamW (linear warm-up, cosine or step decay), horizontal flips and
scale jitter. It evaluates mask AP on a validation split as it goes and
writes, in the output folder:

  last.pt   model, optimizer, scheduler, loss scaler, RNG state and iteration:
            ``--resume last.pt`` carries on exactly where the run stopped
  best.pt   model + metadata of the best validation mask AP, loadable with
            ``rtseg.detect.models.load_model`` and ``--weights best.pt``
  log.jsonl losses and evaluations, one JSON object per line

Ctrl-C (or --time-limit) stops after the current iteration and saves; a second
Ctrl-C aborts at once. All randomness (data order, flips, scale jitter, RoI
sampling) flows from --seed and the saved RNG state, so an interrupted and
resumed CPU run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from tqdm import tqdm

from rtseg.core.commandline import ArgumentParser, add_device_flags, run_command
from rtseg.core.config import apply_section_overrides, setting_choices
from rtseg.core.errors import DataError, DeviceError, OutputError, RuntimeFailure, UsageError, WeightsError
from rtseg.detect.device import resolve_device
from rtseg.detect.models import ARCHITECTURES, build_model, load_model, max_size_for
from rtseg.offline.coco import CocoInstances
from rtseg.offline.evaluate import evaluate_predictions, predict
from rtseg.offline.train_settings import TrainConfig

_T = TypeVar("_T")

STAGES = ["layer4", "layer3", "layer2", "layer1", "conv1"]  # backbone stages, unfrozen from the top
EXIT_INTERRUPTED = 130


@dataclass
class TrainResult:
    """What a call to ``train`` did: where it stopped and its validation results."""

    output_dir: Path
    start_iteration: int
    iteration: int
    total_iterations: int
    stopped: str  # "done", "time limit" or "interrupted"
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_ap: float | None = None


def _resolved(value: _T | None, key: str) -> _T:
    """A setting that ``resolve_settings`` fills in when it is ``None``, as training reads it."""
    if value is None:
        raise ValueError(f"training setting {key!r} is unresolved: pass the settings through resolve_settings")
    return value


def _flag(key: str) -> str:
    """The ``rtseg train`` flag that sets the TrainConfig field ``key``."""
    return "--" + key.replace("_", "-")


def checked_settings(settings: TrainConfig, origin: str = "training settings") -> TrainConfig:
    """``settings`` validated as config sections are (types, ranges, choices; floats as floats), each problem
    named by its flag, plus the two rules that span fields."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    checked = apply_section_overrides(TrainConfig(), values, origin, _flag)
    if checked.epochs is not None and checked.iterations is not None:
        raise UsageError("give --epochs or --iterations, not both")
    if checked.lr_steps != sorted(checked.lr_steps):
        raise UsageError(f"--lr-steps must be increasing fractions of the run, got {checked.lr_steps}")
    missing = [_flag(key) for key in ("data", "images", "output_dir") if not getattr(checked, key)]
    if missing:
        raise UsageError(f"{', '.join(missing)} required (or --resume LAST_PT)")
    return checked


def resolve_settings(settings: TrainConfig, train_set: CocoInstances) -> TrainConfig:
    """Settings with every default filled in from the data, so the saved copy is complete."""
    s = settings
    per_epoch = math.ceil(len(train_set) / s.batch_size)
    sides = [min(i.get("width", 800), i.get("height", 800)) for i in train_set.coco.imgs.values()]
    return dataclasses.replace(
        s,
        iterations=s.iterations or (s.epochs or 12) * per_epoch,
        # SGD: the linear scaling rule from torchvision's 0.02 for 16 images; AdamW: a common rate for detectors
        lr=s.lr or (0.02 * s.batch_size / 16 if s.optimizer == "sgd" else 2e-4),
        size=s.size or int(np.clip(np.median(sides), 32, 800)),  # the images' own resolution, within reason
        trainable_layers=s.trainable_layers if s.trainable_layers is not None else (5 if s.weights == "none" else 3),
        eval_every=s.eval_every or per_epoch,
    )


def lr_factor(settings: TrainConfig, iteration: int) -> float:
    """Multiplier of the base learning rate at ``iteration``: linear warm-up, then cosine or step decay."""
    warmup = min(1.0, 0.001 + 0.999 * iteration / settings.warmup_iters) if settings.warmup_iters else 1.0
    progress = iteration / _resolved(settings.iterations, "iterations")
    if settings.schedule == "cosine":
        return warmup * 0.5 * (1 + math.cos(math.pi * progress))
    return warmup * 0.1 ** sum(progress >= step for step in settings.lr_steps)


def detector_kwargs(settings: TrainConfig) -> dict[str, Any]:
    """Resize settings: scale jitter is torchvision's multi-size training, the last size is used in eval."""
    size = _resolved(settings.size, "size")
    jitter = {int(round(size * f)) for f in np.linspace(1 - settings.scale_jitter, 1 + settings.scale_jitter, 5)}
    return {"min_size": (*sorted(jitter - {size}), size), "max_size": max_size_for(size)}


def replace_heads(model: MaskRCNN, num_classes: int) -> None:
    """New box and mask predictors for ``num_classes`` (background included); the rest keeps its weights."""
    box = model.roi_heads.box_predictor.cls_score
    mask = model.roi_heads.mask_predictor.conv5_mask
    model.roi_heads.box_predictor = FastRCNNPredictor(box.in_features, num_classes)
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask.in_channels, mask.out_channels, num_classes)


def freeze_backbone(model: MaskRCNN, trainable_layers: int, freeze_all_batchnorm: bool) -> list[nn.Module]:
    """Freeze all but the top ``trainable_layers`` ResNet stages; returns the BatchNorm layers to keep in eval mode.

    With pretrained weights every backbone BatchNorm keeps its loaded
    statistics (torchvision's FrozenBatchNorm2d convention: batches of a few
    images give noisy statistics); from random weights only those in frozen
    stages do.
    """
    train = STAGES[:trainable_layers] + (["bn1"] if trainable_layers == 5 else [])
    for name, param in model.backbone.body.named_parameters():
        param.requires_grad_(any(name.startswith(stage) for stage in train))
    frozen: list[nn.Module] = []
    for module in model.backbone.body.modules():
        if isinstance(module, nn.BatchNorm2d) and (
                freeze_all_batchnorm or not any(p.requires_grad for p in module.parameters())):
            module.requires_grad_(False)
            frozen.append(module)
    return frozen


def _train_mode(model: MaskRCNN, frozen: list[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()


def _initial_model(settings: TrainConfig, class_names: tuple[str, ...]) -> tuple[MaskRCNN, str]:
    """The starting model and its architecture (a checkpoint's metadata may name another than --model)."""
    kwargs = detector_kwargs(settings)
    torch.manual_seed(settings.seed)
    if settings.weights == "none":
        return build_model(settings.model, len(class_names), **kwargs), settings.model
    loaded = load_model(settings.model, settings.weights, **kwargs)
    if loaded.class_names != class_names:
        replace_heads(loaded.model, len(class_names))
    return loaded.model, loaded.meta["architecture"]


def _epoch_batches(settings: TrainConfig, n: int, epoch: int) -> list[list[tuple[int, bool]]]:
    """The batches of one epoch as (image index, flip) keys, a pure function of seed and epoch."""
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    flips = (torch.rand(n, generator=generator) < settings.hflip).tolist()
    keys = list(zip(order, flips))
    return [keys[i:i + settings.batch_size] for i in range(0, n, settings.batch_size)]


_Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]  # images and their targets


def _collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> _Batch:
    return [image for image, _ in batch], [target for _, target in batch]


def _ignore_sigint(_worker_id: int) -> None:
    """Data workers leave Ctrl-C to the main process, which stops cleanly after the current iteration."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _batches(settings: TrainConfig, dataset: CocoInstances, start: int, per_epoch: int,
             workers: int) -> Iterator[_Batch]:
    """Batches from iteration ``start`` on, epoch after epoch, never ending."""
    epoch, skip = divmod(start, per_epoch)
    while True:
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=_epoch_batches(settings, len(dataset), epoch)[skip:], collate_fn=_collate,
            num_workers=workers, worker_init_fn=_ignore_sigint if workers else None,
            generator=torch.Generator().manual_seed(settings.seed + epoch),  # keeps the global RNG untouched
        )
        yield from loader
        epoch, skip = epoch + 1, 0


def _train_step(model: MaskRCNN, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]],
                optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, amp: bool,
                clip_grad: float | None) -> dict[str, float]:
    """One optimizer step; returns the loss terms."""
    with torch.autocast(images[0].device.type, enabled=amp):
        loss_dict = model(images, targets)
    loss = sum(loss_dict.values())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad is not None:  # a rare huge gradient (early, from random weights) cannot wreck the run
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad)
    scaler.step(optimizer)
    scaler.update()
    return {"loss": loss.item(), **{k.removeprefix("loss_"): v.item() for k, v in loss_dict.items()}}


class _StopRequest:
    """Turns the first Ctrl-C into a request to stop after the current iteration (and save)."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, _signum: int, _frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("stopping after this iteration and saving last.pt (Ctrl-C again to abort without saving)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _save(path: Path, data: dict[str, Any]) -> None:
    """Write via a temporary file so an interruption never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def read_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """The contents of a last.pt, checked to be one (best.pt holds only a model)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint to resume not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError,
            TypeError) as exc:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint") from exc
    if not isinstance(data, dict) or not {"model", "meta", "optimizer", "iteration", "settings"} <= set(data):
        raise WeightsError(f"{path} is not a training checkpoint (last.pt); to start a new run from its "
                           "weights pass it as --weights")
    return data


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {f"{'mask' if t == 'segm' else 'box'}_{k}": report[t][k] for t in ("segm", "bbox")
            for k in ("AP", "AP50", "AP75", "precision", "recall", "f1")}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@dataclass(frozen=True)
class _Session:
    """How this call runs, as opposed to what the run learns: not saved, a resumed run may run elsewhere."""

    device: torch.device
    amp: bool  # fp16 mixed precision (CUDA only)
    workers: int
    deadline: float | None  # time.monotonic() at which --time-limit stops the run


def _open_session(device: str, precision: str, workers: int | None, threads: int | None,
                  time_limit: float | None) -> _Session:
    """Resolve and check the session settings before any data or model is loaded."""
    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if precision not in ("auto", "fp16", "fp32"):  # bf16 is for inference: training has no bf16 recipe
        raise UsageError(f"training runs in fp32 or fp16 mixed precision: --precision must be auto, fp16 or fp32, "
                         f"got {precision!r}")
    if precision == "fp16" and dev.type != "cuda":
        raise DeviceError("mixed precision (fp16) needs CUDA; on the CPU train with --precision fp32")
    workers = workers if workers is not None else (4 if dev.type == "cuda" else 0)
    if workers < 0:
        raise UsageError(f"--workers must be >= 0, got {workers}")
    if time_limit is not None and time_limit <= 0:
        raise UsageError(f"--time-limit must be positive, got {time_limit}")
    return _Session(dev, dev.type == "cuda" and precision != "fp32", workers,
                    None if time_limit is None else started + time_limit * 60)


@dataclass(frozen=True)
class _Splits:
    """The training and (optional) validation split, checked to share their categories."""

    train: CocoInstances
    val: CocoInstances | None

    @classmethod
    def load(cls, settings: TrainConfig) -> _Splits:
        train_set = CocoInstances(settings.data, settings.images)
        val_set = CocoInstances(settings.val_data, settings.val_images or settings.images) if settings.val_data else None
        if val_set is not None and val_set.class_names != train_set.class_names:
            raise DataError(f"training and validation categories differ: {', '.join(train_set.class_names[1:])} vs "
                            f"{', '.join(val_set.class_names[1:])}")
        return cls(train_set, val_set)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names


def _new_model(settings: TrainConfig, splits: _Splits) -> tuple[TrainConfig, MaskRCNN]:
    """A new run: the settings completed from the data and the initial model; refuses a folder holding a run."""
    settings = resolve_settings(settings, splits.train)
    out_dir = Path(settings.output_dir)
    if (out_dir / "last.pt").exists():
        raise OutputError(f"{out_dir} already holds a run; continue it with --resume {out_dir / 'last.pt'} "
                          "or pick another --output-dir")
    model, architecture = _initial_model(settings, splits.class_names)
    return dataclasses.replace(settings, model=architecture), model


def _saved_model(settings: TrainConfig, splits: _Splits, checkpoint: dict[str, Any]) -> tuple[TrainConfig, MaskRCNN]:
    """The model of the run saved in ``checkpoint`` (a last.pt's contents), with its weights."""
    architecture = checkpoint["meta"]["architecture"]
    if list(checkpoint["meta"]["class_names"]) != list(splits.class_names):
        raise DataError("the data set's categories differ from the ones the run to resume was trained on")
    model = build_model(architecture, len(splits.class_names), **detector_kwargs(settings))
    model.load_state_dict(checkpoint["model"])
    return dataclasses.replace(settings, model=architecture), model


def _make_optimizer(settings: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    lr = _resolved(settings.lr, "lr")
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=settings.weight_decay)


class _Run:
    """A run's live state (model, optimizer, scheduler, loss scaler, progress) and its checkpoints.

    ``train`` builds one, restores it from a last.pt when resuming, and drives
    it; the run saves itself (last.pt, best.pt) and scores itself on the
    validation split.
    """

    def __init__(self, settings: TrainConfig, session: _Session, splits: _Splits, model: MaskRCNN) -> None:
        self.settings, self.session, self.splits = settings, session, splits
        self.out_dir = Path(settings.output_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {self.out_dir}: {exc.strerror}") from exc
        self.model = model.to(session.device)
        self.frozen = freeze_backbone(model, _resolved(settings.trainable_layers, "trainable_layers"),
                                      freeze_all_batchnorm=settings.weights != "none")
        self.optimizer = _make_optimizer(settings, [p for p in model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, functools.partial(lr_factor, settings))
        self.scaler = torch.amp.GradScaler(session.device.type, enabled=session.amp)
        self.meta = {"architecture": settings.model, "class_names": list(splits.class_names),
                     "input_size": settings.size}
        self.result = TrainResult(self.out_dir, 0, 0, _resolved(settings.iterations, "iterations"), "done")

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Carry on from a last.pt: optimizer, scheduler, scaler, RNG state, iteration and evaluations."""
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.session.amp and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        if self.session.device.type == "cuda" and checkpoint["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        self.result.start_iteration = self.result.iteration = int(checkpoint["iteration"])
        self.result.best_ap = checkpoint.get("best_ap")
        self.result.evaluations = list(checkpoint.get("evaluations", []))

    def save_last(self) -> None:
        """last.pt: everything ``restore`` needs to carry on exactly."""
        cuda = self.session.device.type == "cuda"
        _save(self.out_dir / "last.pt", {
            "model": _cpu_state(self.model), "meta": self.meta, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "iteration": self.result.iteration, "settings": dataclasses.asdict(self.settings),
            "best_ap": self.result.best_ap, "evaluations": self.result.evaluations,
            "rng": {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else []},
        })

    def save_best(self) -> None:
        """best.pt: the model and its metadata only, loadable with ``load_model``."""
        _save(self.out_dir / "best.pt", {"model": _cpu_state(self.model), "meta": self.meta})

    def train_mode(self) -> None:
        _train_mode(self.model, self.frozen)

    def step(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """One optimizer step on a batch from the loader; the loss terms, checked to be finite."""
        dev = self.session.device
        images = [image.to(dev, non_blocking=True) for image in images]
        targets = [{k: v.to(dev, non_blocking=True) for k, v in t.items()} for t in targets]
        losses = _train_step(self.model, images, targets, self.optimizer, self.scaler, self.session.amp,
                             self.settings.clip_grad)
        if not math.isfinite(losses["loss"]):
            raise RuntimeFailure(f"training diverged: the loss is {losses['loss']} at iteration "
                                 f"{self.result.iteration + 1}; lower --lr (now {self.settings.lr:g})")
        self.scheduler.step()
        self.result.iteration += 1
        return losses

    def evaluate(self, val: CocoInstances, log: IO[str]) -> None:
        """Score the validation split ``val``; keep best.pt. Forks the RNG so evaluating never changes training."""
        tick = time.monotonic()
        dev = self.session.device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            predictions = predict(self.model, val, self.splits.class_names, dev,
                                  self.settings.batch_size, torch.float16 if self.session.amp else torch.float32)
        self.train_mode()
        result = self.result
        summary = {"iteration": result.iteration, **_summary(evaluate_predictions(val.coco, predictions))}
        result.evaluations.append(summary)
        ap = summary["mask_AP"] if summary["mask_AP"] is not None else -1.0
        improved = result.best_ap is None or ap > result.best_ap
        if improved:
            result.best_ap = ap
            self.save_best()
        log.write(json.dumps({"eval": summary}) + "\n")
        tqdm.write(f"eval @ {result.iteration}/{self.settings.iterations}: mask AP {_fmt(summary['mask_AP'])} "
                   f"AP50 {_fmt(summary['mask_AP50'])} AP75 {_fmt(summary['mask_AP75'])} | box AP "
                   f"{_fmt(summary['box_AP'])} AP50 {_fmt(summary['box_AP50'])} | mask P/R/F1 @0.5 "
                   f"{summary['mask_precision']:.3f}/{summary['mask_recall']:.3f}/{summary['mask_f1']:.3f} "
                   f"({time.monotonic() - tick:.0f} s){'  best' if improved else ''}")

    def announce(self, resumed: bool) -> None:
        s, dev = self.settings, self.session.device
        if resumed:
            tqdm.write(f"resuming {s.model} at iteration {self.result.iteration}/{s.iterations} -> {self.out_dir}")
            return
        names = self.splits.class_names
        tqdm.write(f"training {s.model} on {len(self.splits.train)} images, {len(names) - 1} classes "
                   f"({', '.join(names[1:])}): {s.iterations} iterations of {s.batch_size} "
                   f"at {s.size} px, lr {s.lr:g}, {dev.type}{' fp16' if self.session.amp else ''} -> {self.out_dir}")


def _log_losses(run: _Run, window: list[dict[str, float]], seconds: float, log: IO[str]) -> None:
    """Mean loss terms of the iterations since the last log line, to log.jsonl and the console."""
    mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
    rate = seconds / len(window)
    lr = run.scheduler.get_last_lr()[0]
    iteration, total = run.result.iteration, run.settings.iterations
    log.write(json.dumps({"iteration": iteration, **mean, "lr": lr, "s_per_it": rate}) + "\n")
    log.flush()
    tqdm.write(f"it {iteration}/{total} " + " ".join(f"{k} {v:.3f}" for k, v in mean.items())
               + f" lr {lr:.4g} {rate:.2f} s/it")


def _loop(run: _Run, log: IO[str], bar: tqdm, stop: _StopRequest, log_every: int) -> str:
    """Train until done, Ctrl-C or the time limit, evaluating and saving every --eval-every; why it stopped."""
    settings, result = run.settings, run.result
    total, eval_every = _resolved(settings.iterations, "iterations"), _resolved(settings.eval_every, "eval_every")
    per_epoch = math.ceil(len(run.splits.train) / settings.batch_size)
    batches = _batches(settings, run.splits.train, result.iteration, per_epoch, run.session.workers)
    window: list[dict[str, float]] = []
    tick = time.monotonic()
    while result.iteration < total:
        losses = run.step(*next(batches))
        window.append(losses)
        bar.update()
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
        if result.iteration % log_every == 0 or result.iteration == total:
            _log_losses(run, window, time.monotonic() - tick, log)
            window, tick = [], time.monotonic()
        if result.iteration % eval_every == 0:
            if run.splits.val is not None:
                run.evaluate(run.splits.val, log)
            run.save_last()
        if stop.requested:
            return "interrupted"
        deadline = run.session.deadline
        if deadline is not None and time.monotonic() > deadline and result.iteration < total:
            return "time limit"
    return "done"


def _finish(run: _Run, log: IO[str]) -> None:
    """After a run that was not interrupted: a last evaluation unless one was just made, and best.pt."""
    result = run.result
    if run.splits.val is None:  # nothing to choose by: the final model is the one to use
        run.save_best()
    elif not (result.evaluations and result.evaluations[-1]["iteration"] == result.iteration):
        run.evaluate(run.splits.val, log)


def train(settings: TrainConfig, *, device: str = "auto", precision: str = "auto", workers: int | None = None,
          threads: int | None = None, time_limit: float | None = None, progress: bool | None = None,
          log_every: int = 20, resume: dict[str, Any] | None = None) -> TrainResult:
    """Run (or, with ``resume`` = a last.pt's contents, continue) a training run; see the module docstring."""
    settings = checked_settings(settings)
    session = _open_session(device, precision, workers, threads, time_limit)
    splits = _Splits.load(settings)
    settings, model = _new_model(settings, splits) if resume is None else _saved_model(settings, splits, resume)
    run = _Run(settings, session, splits, model)
    if resume is not None:
        run.restore(resume)
    run.announce(resumed=resume is not None)
    stop = _StopRequest()
    run.train_mode()
    bar = tqdm(total=settings.iterations, initial=run.result.iteration, desc="train", unit="it", dynamic_ncols=True,
               disable=not (sys.stderr.isatty() if progress is None else progress))
    log = (run.out_dir / "log.jsonl").open("a", encoding="utf-8")
    try:
        with stop.installed():
            run.result.stopped = _loop(run, log, bar, stop, log_every)
        if run.result.stopped != "interrupted":
            _finish(run, log)
        run.save_last()
    finally:
        bar.close()
        log.close()
    return run.result


_SETTINGS_FLAGS = {f.name for f in dataclasses.fields(TrainConfig)}


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m rtseg train",
        description="Train Mask R-CNN on a COCO-format instance-segmentation data set (fine-tune from COCO "
                    "weights or a checkpoint, or train from random weights). Writes last.pt (resumable), "
                    "best.pt (best validation mask AP, for --weights) and log.jsonl to --output-dir.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  # synthetic shapes, from random weights, on a 2-core CPU in about 17 minutes (the README's recipe:\n"
               "  # mask AP50 0.93 on the 200 validation images)\n"
               "  python scripts/make_synthetic.py images --out data/shapes --train 1000 --val 200 --size 128\n"
               "  python -m rtseg train --data data/shapes/train.json --images data/shapes/images \\\n"
               "      --val-data data/shapes/val.json --val-images data/shapes/images --model maskrcnn_r18 \\\n"
               "      --weights none --output-dir runs/shapes --optimizer adamw --lr 1e-3 --clip-grad 10 \\\n"
               "      --iterations 1500 --eval-every 500\n"
               "  # fine-tune torchvision's COCO model on your own data, on a GPU with mixed precision\n"
               "  python -m rtseg train --data train.json --images imgs --val-data val.json --model maskrcnn_v2 \\\n"
               "      --weights default --epochs 12 --size 640 --trainable-layers 3 --output-dir runs/mine\n"
               "  # continue an interrupted run exactly where it stopped\n"
               "  python -m rtseg train --resume runs/shapes/last.pt\n"
               "then: python -m rtseg evaluate --data val.json --images DIR --weights runs/shapes/best.pt",
    )
    s = parser.add_argument_group("run settings (saved in last.pt; not allowed with --resume)")
    s.add_argument("--data", help="COCO instances JSON of the training split")
    s.add_argument("--images", help="folder with the training images")
    s.add_argument("--val-data", help="COCO instances JSON of the validation split (best.pt is chosen on its mask AP)")
    s.add_argument("--val-images", help="folder with the validation images (default: --images)")
    s.add_argument("--output-dir", help="folder for last.pt, best.pt and log.jsonl")
    s.add_argument("--model", help=f"architecture: {', '.join(ARCHITECTURES)} (default maskrcnn_r18)")
    s.add_argument("--weights", help="start from 'default' (torchvision COCO weights, the default), a checkpoint "
                                     "PATH, or 'none' (random weights)")
    length = s.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="passes over the training set (default 12)")
    length.add_argument("--iterations", type=int, help="optimizer steps, instead of --epochs")
    s.add_argument("--batch-size", type=int, help="images per step (default 4)")
    s.add_argument("--lr", type=float, help="peak learning rate (default: SGD 0.02 x batch size / 16, AdamW 2e-4)")
    s.add_argument("--optimizer", choices=setting_choices(TrainConfig, "optimizer"),
                   help="sgd (default; the torchvision recipe for fine-tuning) or adamw (adaptive steps: "
                        "faster from random weights)")
    s.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    s.add_argument("--weight-decay", type=float, help="weight decay (default 1e-4)")
    s.add_argument("--clip-grad", type=float, metavar="NORM",
                   help="clip the gradients' global norm to this (default: no clipping)")
    s.add_argument("--warmup-iters", type=int, help="iterations of linear learning-rate warm-up (default 100)")
    s.add_argument("--schedule", choices=setting_choices(TrainConfig, "schedule"), help="decay after warm-up (default cosine)")
    s.add_argument("--lr-steps", type=float, nargs="+", metavar="FRACTION",
                   help="with --schedule step: fractions of the run where the rate drops 10x (default 0.7 0.9)")
    s.add_argument("--size", type=int, help="shorter image side fed to the model (default: the training images' "
                                            "median shorter side, at most 800)")
    s.add_argument("--scale-jitter", type=float, help="train at sizes up to this fraction above/below --size "
                                                      "(default 0.25; 0 turns it off)")
    s.add_argument("--hflip", type=float, help="probability of a horizontal flip (default 0.5)")
    s.add_argument("--trainable-layers", type=int, help="ResNet stages trained, from the top, 0-5 (default 3 from "
                                                        "pretrained weights, 5 from random weights)")
    s.add_argument("--eval-every", type=int, help="evaluate and save last.pt every N iterations (default: each epoch)")
    s.add_argument("--seed", type=int, help="seed of the initial weights, data order and augmentation (default 0)")
    r = parser.add_argument_group("session settings")
    r.add_argument("--resume", metavar="LAST_PT", help="continue the run saved in this last.pt")
    add_device_flags(r, precision_help="auto = fp16 mixed precision on CUDA, fp32 on the CPU (training has no bf16 "
                                       "recipe: bf16 is for rtseg and rtseg evaluate)")
    r.add_argument("--workers", type=int, help="data-loading processes (default 4 on CUDA, 0 on the CPU)")
    r.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice, one per core); on a "
                                               "CPU shared with other jobs 1 is often several times faster")
    r.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop after this many minutes (then evaluate and save; best.pt is kept)")
    r.add_argument("--log-every", type=int, default=20, help="print and log mean losses every N iterations (default 20)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when not on a terminal)")
    return parser


def main(argv: list[str]) -> int:
    """Command line entry: 0 when the run finished or hit --time-limit, 130 when stopped by Ctrl-C (resumable)."""
    args = vars(_parser().parse_args(argv))
    given = {k: v for k, v in args.items() if k in _SETTINGS_FLAGS and v is not None}
    if args["log_every"] < 1:
        raise UsageError(f"--log-every must be at least 1, got {args['log_every']}")
    if args["resume"]:
        if given:
            raise UsageError("--resume continues the saved run with its own settings; leave out "
                             + ", ".join(_flag(k) for k in sorted(given)))
        checkpoint = read_training_checkpoint(args["resume"])
        saved = {k: v for k, v in checkpoint["settings"].items() if k in _SETTINGS_FLAGS}
        settings = TrainConfig(**{**saved, "output_dir": str(Path(args["resume"]).parent)})
    else:
        settings, checkpoint = TrainConfig(**given), None
    result = train(settings, device=args["device"], precision=args["precision"], workers=args["workers"],
                   threads=args["threads"], time_limit=args["time_limit"], progress=False if args["no_progress"] else None,
                   log_every=args["log_every"], resume=checkpoint)
    best = "" if result.best_ap is None else f"; best validation mask AP {result.best_ap:.3f}"
    if result.stopped == "interrupted":
        print(f"stopped at iteration {result.iteration}/{result.total_iterations}; continue with: "
              f"python -m rtseg train --resume {result.output_dir / 'last.pt'}")
        return EXIT_INTERRUPTED
    print(f"{result.stopped} at iteration {result.iteration}/{result.total_iterations}{best}; "
          f"weights: {result.output_dir / 'best.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
