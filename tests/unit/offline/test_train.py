"""Training on a tiny synthetic set: the loss falls, checkpoints load back, and resuming is exact."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

import rtseg.offline.train as train_module
from rtseg.core.config import setting_choices
from rtseg.core.errors import ConfigError, OutputError, UsageError, WeightsError
from rtseg.detect.models import ARCHITECTURES, load_model
from rtseg.offline.synthetic import write_image_dataset
from rtseg.offline.train import checked_settings, main, read_training_checkpoint, train
from rtseg.offline.train_settings import TrainConfig

CLASSES = ("__background__", "circle", "square", "triangle")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_image_dataset(tmp_path_factory.mktemp("shapes"), num_train=8, num_val=3, size=96, seed=3)


def _flags(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--data", str(data["train"]), "--images", str(data["images"]), "--output-dir", str(out),
            "--weights", "none", "--batch-size", "2", "--lr", "0.01", "--warmup-iters", "2", "--size", "96",
            "--device", "cpu", "--no-progress", *extra]


@pytest.fixture(scope="module")
def run(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 iterations with per-iteration loss logging and two validation passes."""
    out = tmp_path_factory.mktemp("run")
    code = main(_flags(data, out, "--iterations", "16", "--val-data", str(data["val"]), "--eval-every", "8",
                       "--log-every", "1"))
    assert code == 0
    return out


def _log(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_loss_falls(run: Path) -> None:
    losses = [entry["loss"] for entry in _log(run) if "loss" in entry]
    assert len(losses) == 16
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.8 * first, losses


def test_validation_is_logged_and_best_checkpoint_written(run: Path) -> None:
    evaluations = [entry["eval"] for entry in _log(run) if "eval" in entry]
    assert [e["iteration"] for e in evaluations] == [8, 16]
    assert all(0.0 <= e["mask_AP"] <= 1.0 for e in evaluations)
    best = torch.load(run / "best.pt", weights_only=True)
    assert set(best) == {"model", "meta"}
    assert best["meta"] == {"architecture": "maskrcnn_r18", "class_names": list(CLASSES), "input_size": 96}
    saved = read_training_checkpoint(run / "last.pt")
    assert saved["iteration"] == 16 and saved["best_ap"] == max(e["mask_AP"] for e in evaluations)


def test_checkpoint_round_trips_through_load_model(run: Path) -> None:
    # the name given is overruled by the checkpoint's own metadata
    loaded = load_model("maskrcnn_v1", str(run / "best.pt"))
    assert loaded.class_names == CLASSES
    assert loaded.meta["architecture"] == "maskrcnn_r18" and loaded.meta["input_size"] == 96
    saved = torch.load(run / "best.pt", weights_only=True)["model"]
    state = loaded.model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    # last.pt also loads as plain weights
    assert load_model("maskrcnn_r18", str(run / "last.pt")).class_names == CLASSES


def _same(a: Any, b: Any) -> bool:
    """Deep equality of checkpoint contents, tensors compared exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_resume_after_interruption_matches_an_uninterrupted_run(data: dict[str, Path], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(_flags(data, tmp_path / "full", "--iterations", "6", "--log-every", "1")) == 0

    real_step, calls = train_module._train_step, []

    def step_then_ctrl_c(*args: Any, **kwargs: Any) -> dict[str, float]:
        losses = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # what a user's Ctrl-C does, mid-run
        return losses

    monkeypatch.setattr(train_module, "_train_step", step_then_ctrl_c)
    part = tmp_path / "part"
    assert main(_flags(data, part, "--iterations", "6", "--log-every", "1")) == train_module.EXIT_INTERRUPTED
    interrupted = read_training_checkpoint(part / "last.pt")
    assert interrupted["iteration"] == 3
    monkeypatch.undo()

    assert main(["--resume", str(part / "last.pt"), "--no-progress", "--log-every", "1"]) == 0
    logged = [e["iteration"] for e in _log(part) if "loss" in e]
    assert logged == [1, 2, 3, 4, 5, 6]  # carried on at the saved iteration, nothing repeated or skipped
    assert [e["loss"] for e in _log(part) if "loss" in e] == [e["loss"] for e in _log(tmp_path / "full") if "loss" in e]
    resumed, full = read_training_checkpoint(part / "last.pt"), read_training_checkpoint(tmp_path / "full" / "last.pt")
    assert resumed["iteration"] == full["iteration"] == 6
    for key in ("model", "optimizer", "scheduler", "rng"):
        assert _same(resumed[key], full[key]), key
    assert resumed["settings"] == {**full["settings"], "output_dir": str(part)}


def test_resume_refuses_new_settings(run: Path) -> None:
    with pytest.raises(UsageError, match="--lr"):
        main(["--resume", str(run / "last.pt"), "--lr", "0.1"])
    with pytest.raises(WeightsError, match="not a training checkpoint"):
        main(["--resume", str(run / "best.pt")])


def test_bad_starts_fail_with_one_line(data: dict[str, Path], run: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--data"):
        main(["--images", "x", "--output-dir", str(tmp_path)])
    with pytest.raises(OutputError, match="--resume"):
        main(_flags(data, run, "--iterations", "1"))
    with pytest.raises(WeightsError, match="no pretrained weights"):
        train(TrainConfig(data=str(data["train"]), images=str(data["images"]), output_dir=str(tmp_path / "d"),
                          weights="default", iterations=1), device="cpu", progress=False)
    with pytest.raises(UsageError, match="--trainable-layers"):
        main(_flags(data, tmp_path / "e", "--trainable-layers", "6"))


def test_bf16_is_refused_in_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    # --precision offers what inference offers; training has fp32 and fp16 mixed precision only
    with pytest.raises(UsageError, match="training runs in fp32 or fp16 mixed precision.*got 'bf16'"):
        main(_flags(data, tmp_path / "bf16", "--iterations", "1", "--precision", "bf16"))
    assert not (tmp_path / "bf16").exists()


def test_adamw_with_gradient_clipping_learns(data: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    norms: list[float] = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params: Any, max_norm: float) -> torch.Tensor:
        total = clip(params, max_norm)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    out = tmp_path / "adamw"
    assert main(_flags(data, out, "--iterations", "12", "--log-every", "1", "--optimizer", "adamw", "--lr", "1e-3",
                       "--clip-grad", "5")) == 0
    losses = [entry["loss"] for entry in _log(out) if "loss" in entry]
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    assert len(norms) == 12 and max(norms) <= 5.0 + 1e-3  # every step clipped to the norm asked for
    saved = read_training_checkpoint(out / "last.pt")["settings"]
    assert saved["optimizer"] == "adamw" and saved["clip_grad"] == 5.0


PATHS = {"data": "train.json", "images": "images", "output_dir": "out"}


def test_settings_are_checked_like_config_sections_and_named_by_flag() -> None:
    bad = TrainConfig(**PATHS, model="maskrcnn_r19", lr=0, momentum=1.0, lr_steps=[0.5, 1.0], trainable_layers=6,
                      size=16, val_data=3)
    with pytest.raises(ConfigError) as err:
        checked_settings(bad)
    message = str(err.value)
    for fragment in ("--model: 'maskrcnn_r19' is not one of", "--lr: 0.0 is not above 0.0",
                     "--momentum: 1.0 is not below 1.0", "--lr-steps: 1.0 is not below 1.0",
                     "--trainable-layers: 6 is above the maximum 5", "--size: 16 is below the minimum 32",
                     "--val-data: expected str or null, got int 3"):
        assert fragment in message
    assert "\n" not in message
    with pytest.raises(UsageError, match="--epochs or --iterations, not both"):
        checked_settings(TrainConfig(**PATHS, epochs=2, iterations=10))
    with pytest.raises(UsageError, match="--lr-steps must be increasing"):
        checked_settings(TrainConfig(**PATHS, lr_steps=[0.9, 0.5]))
    with pytest.raises(UsageError, match="--images, --output-dir required"):
        checked_settings(TrainConfig(data="train.json"))


def test_checked_settings_keep_valid_values_with_floats_as_floats() -> None:
    checked = checked_settings(TrainConfig(**PATHS, lr=1, lr_steps=[0.5, 0.75], clip_grad=None, epochs=3))
    assert checked == TrainConfig(**PATHS, lr=1.0, lr_steps=[0.5, 0.75], epochs=3)
    assert isinstance(checked.lr, float) and all(isinstance(step, float) for step in checked.lr_steps)


def test_model_choices_are_the_trainable_architectures() -> None:
    assert set(setting_choices(TrainConfig, "model")) == set(ARCHITECTURES)
