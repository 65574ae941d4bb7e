"""Weights: local files load safely, and every bad file is one clear error."""

from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch

from rtseg.core.config import ModelConfig
from rtseg.core.errors import ConfigError, WeightsError
from rtseg.detect.maskrcnn import MaskRCNNDetector
from rtseg.detect.models import COCO_CATEGORIES, build_model, load_model, read_checkpoint, set_input_size


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/rtseg-pwned",))


@pytest.fixture(scope="module")
def v1_state():
    torch.manual_seed(1)
    return build_model("maskrcnn_v1", len(COCO_CATEGORIES)).state_dict()


def test_state_dict_file_round_trips(tmp_path, v1_state):
    path = tmp_path / "w.pt"
    torch.save(v1_state, path)
    loaded = load_model("maskrcnn_v1", str(path))
    assert torch.equal(loaded.model.state_dict()["roi_heads.box_predictor.cls_score.weight"],
                       v1_state["roi_heads.box_predictor.cls_score.weight"])
    assert loaded.class_names == COCO_CATEGORIES


def test_checkpoint_metadata_names_the_classes(tmp_path):
    names = ("__background__", "forklift", "helmet")
    model = build_model("maskrcnn_v1", len(names))
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "meta": {"architecture": "maskrcnn_v1", "class_names": list(names)}}, path)
    loaded = load_model("maskrcnn_v2", str(path))  # the checkpoint's architecture wins
    assert loaded.class_names == names and loaded.meta["architecture"] == "maskrcnn_v1"


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(WeightsError, match="is not a PyTorch checkpoint"):
        read_checkpoint(tmp_path / "text.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="holds no model state dict"):
        read_checkpoint(tmp_path / "list.pt")


def test_wrong_architecture_is_named(tmp_path, v1_state):
    path = tmp_path / "v1.pt"
    torch.save(v1_state, path)
    with pytest.raises(WeightsError, match="do not fit architecture maskrcnn_v2"):
        load_model("maskrcnn_v2", str(path))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"model": Exploit()}, handle)
    if os.path.exists("/tmp/rtseg-pwned"):
        os.remove("/tmp/rtseg-pwned")
    with pytest.raises(WeightsError, match="refusing to load"):
        read_checkpoint(path)
    assert not os.path.exists("/tmp/rtseg-pwned")


def test_offline_default_weights_name_the_cache_and_the_flag(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        import urllib.error
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as err:
        load_model("maskrcnn_v1", "default")
    message = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth") in message
    assert "--weights" in message


def test_input_size_comes_from_the_flag_then_the_checkpoint_then_the_architecture(tmp_path):
    names = ("__background__", "circle")
    path = tmp_path / "small.pt"
    torch.save({"model": build_model("maskrcnn_r18", len(names)).state_dict(),
                "meta": {"architecture": "maskrcnn_r18", "class_names": list(names), "input_size": 96}}, path)
    assert set_input_size(load_model("maskrcnn_v1", str(path))) == (96, 160)  # trained at 96: 96 x 1333/800
    assert set_input_size(load_model("maskrcnn_v1", str(path)), 128, 200) == (128, 200)
    stock = load_model("maskrcnn_v1", "none")
    assert set_input_size(stock) == (800, 1333)
    assert set_input_size(stock, 432) == (432, 1333)  # an explicit size keeps the architecture's cap at least
    assert stock.model.transform.min_size == (432,) and stock.model.transform.max_size == 1333


def test_a_fine_tuned_checkpoint_runs_at_its_training_size(tmp_path):
    names = ("__background__", "circle")
    path = tmp_path / "small.pt"
    torch.save({"model": build_model("maskrcnn_r18", len(names)).state_dict(),
                "meta": {"architecture": "maskrcnn_r18", "class_names": list(names), "input_size": 64}}, path)
    detector = MaskRCNNDetector(dataclasses.replace(ModelConfig(), weights=str(path), device="cpu"))
    batch = detector.preprocess([np.zeros((120, 200, 3), np.uint8)])
    assert batch.image_sizes == [(64, 106)]
    with pytest.raises(ConfigError, match="model.size must be 0 .automatic. or at least 32, got 16"):
        MaskRCNNDetector(dataclasses.replace(ModelConfig(), weights=str(path), device="cpu", size=16))
