"""The model zoo and checkpoints in the original solution's format."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from tests.original_checkpoints import (
    NUMPY1_SCALAR,
    NUMPY2_SCALAR,
    RunsACommand,
    original_state_dict,
    pickle_bytes,
    save_numpy1_checkpoint,
)
from training.models.zoo import ENCODERS, CheckpointError, create_model, encoder_spec, load_weights, read_checkpoint


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_numpy1_original_checkpoint_loads_strictly_with_the_same_logits(tmp_path, legacy):
    torch.manual_seed(0)
    source = create_model("tf_efficientnet_b0_ns").eval()
    state = original_state_dict(source)
    assert "module.encoder.classifier.weight" in state and "module.fc.weight" in state
    path = save_numpy1_checkpoint(
        tmp_path / "final_111_DeepFakeClassifier_tf_efficientnet_b0_ns_0_23", state, 23, 0.1931, legacy=legacy
    )
    pickled = pickle_bytes(path)
    assert NUMPY1_SCALAR in pickled and NUMPY2_SCALAR not in pickled, "the file names numpy 1's module"

    torch.manual_seed(1)
    model = create_model("tf_efficientnet_b0_ns").eval()
    checkpoint = read_checkpoint(path)
    assert checkpoint["epoch"] == 23 and isinstance(checkpoint["bce_best"], np.float64)
    assert float(checkpoint["bce_best"]) == 0.1931
    load_weights(model, checkpoint["state_dict"])
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(images), source(images))


@pytest.mark.parametrize(
    ("payload", "refused"),
    [
        (RunsACommand(), f"{os.system.__module__}.system"),
        (np.float32(0.5), "numpy.dtypes.Float32DType"),
        (np.arange(3), "multiarray._reconstruct"),  # numpy arrays are not among the allowed globals
    ],
    ids=["os.system", "float32-dtype", "ndarray"],
)
def test_a_pickle_with_any_other_global_is_refused_in_one_line(tmp_path, payload, refused):
    path = save_numpy1_checkpoint(tmp_path / "tampered.pt", {"fc.bias": torch.zeros(1)}, extra=payload)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: refused to load: its pickle holds ")
    assert refused in message and caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint\n" * 20)
    zipped = tmp_path / "truncated.pt"
    torch.save({"state_dict": {"w": torch.ones(100)}}, zipped)
    zipped.write_bytes(zipped.read_bytes()[:300])
    for path in (tmp_path / "notes.pt", zipped):
        with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: (refused to load|not a readable)"):
            read_checkpoint(path)


def test_bare_state_dict_files_load_too(tmp_path):
    source = create_model("resnet18")
    torch.save(source.state_dict(), tmp_path / "bare.pt")
    model = create_model("resnet18")
    load_weights(model, read_checkpoint(tmp_path / "bare.pt")["state_dict"])
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values(), strict=True)
    )


def test_a_checkpoint_of_another_encoder_is_refused_with_the_differences(tmp_path):
    torch.save({"state_dict": create_model("resnet18").state_dict()}, tmp_path / "r18.pt")
    with pytest.raises(CheckpointError, match=r"missing \d+ .*unexpected \d+|shape differs"):
        load_weights(create_model("tf_efficientnet_b0_ns"), read_checkpoint(tmp_path / "r18.pt")["state_dict"])
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.pt")


def test_the_classifier_keeps_the_encoders_head_and_adds_one_logit():
    model = create_model("tf_efficientnet_b0_ns")
    keys = set(model.state_dict())
    assert {"encoder.classifier.weight", "encoder.classifier.bias", "fc.weight", "fc.bias"} <= keys
    assert model.fc.in_features == 1280 and model(torch.randn(1, 3, 64, 64)).shape == (1, 1)


def test_listed_encoders_use_the_recipe_settings_and_any_timm_name_works():
    assert encoder_spec("tf_efficientnet_b7_ns").timm_name == "tf_efficientnet_b7.ns_jft_in1k"
    assert encoder_spec("tf_efficientnet_b7_ns").input_size == 380
    assert encoder_spec("tf_efficientnet_b7_ns").drop_path_rate == 0.2
    assert set(ENCODERS) >= {"tf_efficientnet_b4_ns", "tf_efficientnet_b5_ns", "xception", "resnet34"}
    assert encoder_spec("mobilenetv3_small_100").input_size == 224
    with pytest.raises(ValueError, match="unknown encoder"):
        encoder_spec("not_a_model")
