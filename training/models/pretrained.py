"""Pretrained encoder weights that never hang: local file, timm/Hugging Face cache, or download.

Lookup order for `create_encoder(name, pretrained=True, pretrained_file=...)`:
1. `pretrained_file` (a path in the config or on the command line), loaded from disk;
2. the file already in the Hugging Face cache (timm 1.x) or torch hub cache (older timm URLs);
3. a download through timm, only when the hub is online and reachable.
When the weights are in neither place and the hub is offline (HF_HUB_OFFLINE=1) or cannot be
reached within a second or two, `PretrainedWeightsError` says what was looked for and how to
supply it, instead of the hub's minute of retries.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from common.cli import InputError

logger = logging.getLogger(__name__)

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
REACHABLE_TIMEOUT_S = 1.5


class PretrainedWeightsError(InputError, RuntimeError):
    """Pretrained weights were asked for but cannot be had; the message (one line, as the commands
    print it) says how to supply them."""


def hub_offline() -> bool:
    import huggingface_hub.constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _reachable(url: str, timeout: float = REACHABLE_TIMEOUT_S) -> bool:
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True  # behind a proxy a direct connection says nothing; let the download try
    parsed = urlparse(url)
    outcome: list[bool] = []

    def connect() -> None:  # in a thread, because name lookup ignores socket timeouts
        try:
            with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])


def _hf_cache_dir() -> str:
    import huggingface_hub.constants

    return huggingface_hub.constants.HF_HUB_CACHE


def cached_weights(model_name: str) -> Path | None:
    """The cached weights file timm would load for `model_name`, if it is on disk."""
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_WEIGHT_FILES
        for filename in filenames:
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    if cfg.url:
        legacy = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(cfg.url).path)
        if legacy.is_file():
            return legacy
    return None


def _describe_sources(model_name: str) -> str:
    cfg = timm.models.get_pretrained_cfg(model_name)
    places = []
    if cfg.hf_hub_id:
        places.append(f"Hugging Face repo '{cfg.hf_hub_id}' in the cache {_hf_cache_dir()}")
    if cfg.url:
        places.append(f"{os.path.basename(urlparse(cfg.url).path)} in {Path(torch.hub.get_dir()) / 'checkpoints'}")
    return " and ".join(places)


def _missing_weights_error(model_name: str, why: str) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f"pretrained weights for '{model_name}' are not on this machine and {why} "
        f"(looked for {_describe_sources(model_name)}); to supply them, set `pretrained_file: /path/to/weights` in "
        "the config (or pass --pretrained-file), or copy the caches ~/.cache/huggingface and ~/.cache/torch/hub "
        f"from a machine with internet that ran timm.create_model('{model_name}', pretrained=True), or set "
        "`pretrained: false` to train from scratch"
    )


def _hub_url(model_name: str) -> str:
    import huggingface_hub.constants

    cfg = timm.models.get_pretrained_cfg(model_name)
    return huggingface_hub.constants.ENDPOINT if cfg.hf_hub_id else cfg.url


def create_encoder(
    model_name: str,
    pretrained: bool = False,
    pretrained_file: str | os.PathLike | None = None,
    **kwargs,
) -> nn.Module:
    """`timm.create_model` with weights from a local file, the cache, or (online only) the hub."""
    if not timm.is_model(model_name):
        raise ValueError(f"unknown encoder '{model_name}': timm has no such model (see timm.list_models())")
    if pretrained_file is not None:
        path = Path(pretrained_file).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"pretrained_file {path} for '{model_name}' does not exist")
        logger.info("%s: pretrained weights from %s", model_name, path)
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **kwargs)
    if timm.models.get_pretrained_cfg(model_name) is None:
        raise PretrainedWeightsError(f"timm has no pretrained weights for '{model_name}'; set pretrained_file")
    cached = cached_weights(model_name)
    if cached is not None:
        logger.info("%s: pretrained weights from the cache, %s", model_name, cached)
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)}, **kwargs)
    if hub_offline():
        raise _missing_weights_error(model_name, "HF_HUB_OFFLINE is set, so nothing is downloaded")
    url = _hub_url(model_name)
    if not _reachable(url):
        raise _missing_weights_error(model_name, f"{urlparse(url).hostname} cannot be reached")
    logger.info("%s: downloading pretrained weights", model_name)
    return timm.create_model(model_name, pretrained=True, **kwargs)
