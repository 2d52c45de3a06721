"""Ensemble files: relative paths, per-member encoder, size and weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.ensemble import load_member, put_to_center
from inference.ensemble_file import read_ensemble_file
from training.zoo import create_model


def test_members_resolve_paths_and_settings(tmp_path):
    torch.save(create_model("resnet18").state_dict(), tmp_path / "bare.pt")
    (tmp_path / "ensemble.yaml").write_text(
        "members:\n  - checkpoint: bare.pt\n    encoder: resnet18\n    input_size: 72\n    weight: 2\n"
    )
    [entry] = read_ensemble_file(tmp_path / "ensemble.yaml")
    assert entry["path"] == tmp_path / "bare.pt" and entry["weight"] == 2.0
    member = load_member(entry["path"], torch.device("cpu"), entry["encoder"], entry["input_size"], entry["weight"])
    assert (member.encoder, member.input_size, member.weight) == ("resnet18", 72, 2.0)
    (tmp_path / "broken.yaml").write_text("members:\n  - weight: 1\n")
    with pytest.raises(ValueError, match="member 0 has no `checkpoint`"):
        read_ensemble_file(tmp_path / "broken.yaml")


def test_put_to_center_pads_with_black_around_the_face():
    face = np.full((30, 50, 3), 200, np.uint8)
    canvas = put_to_center(face, 60)
    assert canvas.shape == (60, 60, 3)
    rows, cols = np.nonzero(canvas[..., 0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 44, 5, 54)


def test_the_original_ensemble_file_lists_seven_b7_checkpoints_under_weights():
    from tests.conftest import REPO_ROOT

    members = read_ensemble_file(REPO_ROOT / "configs" / "ensemble_original.yaml")
    assert len(members) == 7
    assert all(m["encoder"] == "tf_efficientnet_b7_ns" and m["input_size"] == 380 for m in members)
    assert all(m["path"].resolve().parent == (REPO_ROOT / "weights").resolve() for m in members)
