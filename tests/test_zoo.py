"""The model zoo and checkpoints in the original solution's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.zoo import ENCODERS, CheckpointError, create_model, encoder_spec, load_weights, read_checkpoint


def test_original_format_checkpoint_loads_strictly_with_the_same_logits(tmp_path):
    torch.manual_seed(0)
    source = create_model("tf_efficientnet_b0_ns").eval()
    state = {f"module.{key}": value for key, value in source.state_dict().items()}
    assert "module.encoder.classifier.weight" in state and "module.fc.weight" in state
    path = tmp_path / "final_111_DeepFakeClassifier_tf_efficientnet_b0_ns_0_23"
    torch.save({"epoch": 23, "state_dict": state, "bce_best": np.float64(0.1931)}, path)

    torch.manual_seed(1)
    model = create_model("tf_efficientnet_b0_ns").eval()
    checkpoint = read_checkpoint(path)
    assert checkpoint["epoch"] == 23 and float(checkpoint["bce_best"]) == pytest.approx(0.1931)
    load_weights(model, checkpoint["state_dict"])
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(images), source(images))


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
