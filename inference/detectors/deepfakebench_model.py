"""DeepfakeBench's released detectors (SCLBD/DeepfakeBench release v1.0.1: `xception_best.pth`,
`effnb4_best.pth`) on timm models, read from their files in the authors' exact format.

A file is the `state_dict()` of the authors' detector (training/trainer.py), every key under
`backbone.`; which model it is, its keys say:
- Xception (training/networks/xception.py, mode `original`): timm's `legacy_xception` holds the same
  modules under the same names, less the `backbone.` prefix; `last_linear` is timm's `fc`; the
  `adjust_channel` block the authors always build is unused in mode `original` and dropped. Their
  classifier's ReLU is timm's `act4`.
- EfficientNet-B4 (training/networks/efficientnetb4.py): efficientnet_pytorch's B4 (`backbone.efficientnet.*`)
  whose stem the authors replaced by a plain, unpadded `nn.Conv2d(3, 48, 3, stride 2)`, and whose
  other convolutions keep the "same" paddings efficientnet_pytorch computed for its 380 px design
  size, whatever the input; with `last_layer`, Linear(1792, 2), on the pooled features. Run at
  256 px this is not timm's `tf_efficientnet_b4` (whose padding is computed for each input): here
  that model with the unpadded stem and the four stride-2 depthwise convolutions padded by the
  fixed amounts of the 380 px design (the stride-1 paddings are the same at any size).

Input: 256 x 256 RGB, (x / 255 - 0.5) / 0.5; p(fake) = softmax(logits)[:, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inference.detectors.efficientnet_keys import efficientnet_key
from training.models.zoo import CheckpointError, load_weights, non_finite_tensors, read_checkpoint

XCEPTION = "legacy_xception"
EFFICIENTNET_B4 = "tf_efficientnet_b4"
INPUT_SIZE = 256  # the authors' `resolution` for both
MEAN = STD = (0.5, 0.5, 0.5)

XCEPTION_PREFIX = "backbone."
XCEPTION_UNUSED = "backbone.adjust_channel."  # built always, used only in mode `adjust_channel`
EFFICIENTNET_PREFIX = "backbone.efficientnet."
EFFICIENTNET_HEAD = "backbone.last_layer."
DESIGN_SIZE = 380  # efficientnet_pytorch's image size for B4: its static "same" paddings are computed for it


@dataclass
class DeepfakeBenchModel:
    """One released checkpoint, loaded: `network` gives two logits (real, fake) per 256 px face."""

    name: str  # the file's name
    weight: float
    encoder: str  # XCEPTION or EFFICIENTNET_B4
    input_size: int
    network: nn.Module
    path: Path


def timm_key(key: str, encoder: str) -> str | None:
    """timm's name of the authors' `key` for `encoder`; None for a key that is not the model's (the
    Xception's unused `adjust_channel` included: `is_unused` tells them apart)."""
    if encoder == XCEPTION:
        if not key.startswith(XCEPTION_PREFIX) or key.startswith(XCEPTION_UNUSED):
            return None
        name = key.removeprefix(XCEPTION_PREFIX)
        return "fc." + name.removeprefix("last_linear.") if name.startswith("last_linear.") else name
    if key.startswith(EFFICIENTNET_HEAD):
        return "classifier." + key.removeprefix(EFFICIENTNET_HEAD)
    return efficientnet_key(key.removeprefix(EFFICIENTNET_PREFIX)) if key.startswith(EFFICIENTNET_PREFIX) else None


def is_unused(key: str, encoder: str) -> bool:
    return encoder == XCEPTION and key.startswith(XCEPTION_UNUSED)


def checkpoint_encoder(state: Mapping[str, torch.Tensor]) -> str | None:
    """Which of the two models a state dict is, by its keys; None for neither."""
    if any(key.startswith(EFFICIENTNET_PREFIX) for key in state):
        return EFFICIENTNET_B4
    if f"{XCEPTION_PREFIX}conv1.weight" in state and any(key.startswith(f"{XCEPTION_PREFIX}block1.") for key in state):
        return XCEPTION
    return None


class StaticPaddedConv2d(nn.Conv2d):
    """A convolution whose input is padded by fixed amounts (left, right, top, bottom) whatever its
    size: efficientnet_pytorch's Conv2dStaticSamePadding, its padding computed for the design size."""

    def __init__(self, conv: nn.Conv2d, padding: tuple[int, int, int, int]):
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        self.static_padding = tuple(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, self.static_padding)
        return F.conv2d(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def static_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """efficientnet_pytorch's "same" padding of a `size` input (utils.py Conv2dStaticSamePadding):
    the total split with the odd pixel on the right and bottom."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


def deepfakebench_b4() -> nn.Module:
    """timm's tf_efficientnet_b4 (2 classes) as DeepfakeBench's B4 computes: an unpadded stem, and
    each stage's stride-2 depthwise convolution padded as efficientnet_pytorch padded it for its
    design size (380 px, 190 after the stem), at any input size."""
    import timm

    model = timm.create_model(EFFICIENTNET_B4, pretrained=False, num_classes=2)
    model.conv_stem = nn.Conv2d(3, model.conv_stem.out_channels, 3, stride=2, padding=0, bias=False)
    size = math.ceil(DESIGN_SIZE / 2)
    for stage in model.blocks:
        first = stage[0]
        stride = first.conv_dw.stride[0]
        if stride != 1:
            padding = static_same_padding(size, first.conv_dw.kernel_size[0], stride)
            first.conv_dw = StaticPaddedConv2d(first.conv_dw, padding)
            size = math.ceil(size / stride)
    return model


def build_network(encoder: str) -> nn.Module:
    """The untrained network of `encoder` (no download)."""
    if encoder == EFFICIENTNET_B4:
        return deepfakebench_b4()
    import timm

    return timm.create_model(XCEPTION, pretrained=False, num_classes=2)


def _listed(keys: list[str], limit: int = 4) -> str:
    return f"{len(keys)} ({', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''})"


def timm_state(state: Mapping[str, torch.Tensor], encoder: str, expected: Mapping[str, torch.Tensor], path) -> dict:
    """The authors' state dict under timm's names, refused (CheckpointError naming `path`) where a
    key is missing, unknown or of another shape, or a weight is NaN or infinite, in the authors' names."""
    mapped = {key: timm_key(key, encoder) for key in state}
    unknown = sorted(key for key, name in mapped.items() if name not in expected and not is_unused(key, encoder))
    covered = {name for name in mapped.values() if name is not None}
    missing = sorted(name for name in expected if name not in covered)
    shapes = sorted(
        f"{key} {tuple(state[key].shape)}, expected {tuple(expected[name].shape)}"
        for key, name in mapped.items()
        if name in expected and state[key].shape != expected[name].shape
    )
    problems = [f"unexpected keys {_listed(unknown)}"] if unknown else []
    problems += [f"missing {_listed(missing)} (timm's names)"] if missing else []
    problems += [f"wrong shapes {_listed(shapes)}"] if shapes else []
    if problems:
        raise CheckpointError(f"{path}: not DeepfakeBench's {encoder} format: {'; '.join(problems)}")
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(f"{path}: weights that are NaN or infinite: {_listed(sorted(bad))}")
    return {name: state[key] for key, name in mapped.items() if name is not None}


def load_model(path: str | Path, weight: float = 1.0, device: torch.device | str = "cpu") -> DeepfakeBenchModel:
    """A DeepfakeBench checkpoint read safely (weights_only) and loaded on `device`, eval mode;
    anything else is a CheckpointError (an InputError) naming the file and the problem in one line."""
    path = Path(path)
    state = read_checkpoint(path)["state_dict"]
    encoder = checkpoint_encoder(state)
    if encoder is None:
        keys = ", ".join(list(state)[:3]) or "none"
        raise CheckpointError(
            f"{path}: not a DeepfakeBench Xception or EfficientNet-B4 checkpoint (a state dict with keys "
            f"backbone.conv1.* / backbone.efficientnet.*; its keys begin {keys})"
        )
    network = build_network(encoder)
    load_weights(network, timm_state(state, encoder, network.state_dict(), path), str(path))
    network.eval().to(device)
    return DeepfakeBenchModel(path.name, weight, encoder, INPUT_SIZE, network, path)


def face_tensor(crops) -> torch.Tensor:
    """Crops (N, 256, 256, 3 uint8 RGB) as the authors' loader gives them to the model: ToTensor's
    x / 255 in float32, then Normalize's (x - 0.5) / 0.5, channels first."""
    batch = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255)
    return batch.sub(MEAN[0]).div(STD[0])
