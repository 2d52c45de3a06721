"""Pretrained encoder weights: local file, cache, and a fast clear error offline (no hub retries)."""

from __future__ import annotations

import socket

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file

from training.models.pretrained import PretrainedWeightsError, create_encoder

MODEL = "resnet18.a1_in1k"
HUB_ID = "timm/resnet18.a1_in1k"


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Point the Hugging Face and torch hub caches at empty folders."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch_hub"))
    return tmp_path / "hf"


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_offline_and_not_cached_fails_at_once_with_directions(empty_caches, no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedWeightsError) as error:
        create_encoder(MODEL, pretrained=True)
    message = str(error.value)
    assert HUB_ID in message and str(empty_caches) in message
    assert "HF_HUB_OFFLINE" in message and "pretrained_file" in message


def test_unreachable_hub_fails_at_once_when_not_offline(empty_caches, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for proxy in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    attempts = []

    def unreachable(address, timeout=None, *args, **kwargs):
        attempts.append((address, timeout))
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(PretrainedWeightsError, match="cannot be reached"):
        create_encoder(MODEL, pretrained=True)
    assert len(attempts) == 1 and attempts[0][1] <= 2


def test_local_pretrained_file_is_loaded(tmp_path, no_network):
    torch.manual_seed(0)
    source = create_encoder(MODEL)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    torch.manual_seed(1)
    loaded = create_encoder(MODEL, pretrained_file=path)
    assert _same_weights(source, loaded)
    assert not _same_weights(source, create_encoder(MODEL))


def test_missing_pretrained_file_names_the_path(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="nowhere.pth"):
        create_encoder(MODEL, pretrained_file=tmp_path / "nowhere.pth")


def test_weights_in_the_hugging_face_cache_are_used_offline(empty_caches, no_network, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(2)
    source = create_encoder(MODEL)
    repo = empty_caches / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(snapshot / "model.safetensors"))
    loaded = create_encoder(MODEL, pretrained=True)
    assert _same_weights(source, loaded)


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="no_such_net"):
        create_encoder("no_such_net")


def test_training_offline_without_the_weights_ends_in_one_line_with_directions(
    empty_caches, no_network, monkeypatch, tmp_path, capsys
):
    """Review 1, T1: `training.train` offline with the encoder's weights nowhere printed a traceback
    ending in PretrainedWeightsError (a RuntimeError, not bad input to the command line)."""
    from common import cli
    from tests.conftest import REPO_ROOT
    from training import train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = REPO_ROOT / "configs" / "demo.yaml"  # resnet18, pretrained: false; set true below
    args = ["--config", str(config), "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    assert cli.run(train.main, [*args, "--set", "model.pretrained=true", "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1, error
    assert error[0].startswith("error: pretrained weights for 'resnet18' are not on this machine"), error
    assert "HF_HUB_OFFLINE" in error[0] and "--pretrained-file" in error[0] and "pretrained: false" in error[0]
    assert not (tmp_path / "out").exists()
