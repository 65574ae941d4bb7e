"""Weights: local files load safely, and every bad file is one clear error."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from rtseg.errors import WeightsError
from rtseg.models import COCO_CATEGORIES, build_model, load_model, read_checkpoint


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
