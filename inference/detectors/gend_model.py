"""GenD's model from its released file (yermandy/GenD_CLIP_L_14's model.safetensors) on timm.

The file holds the authors' Hugging Face module tree (src/hf/modeling_gend.py, transformers 4.56.2):
the CLIP ViT-L/14 vision tower under `feature_extractor.vision_model.*`, the unused
`feature_extractor.visual_projection.weight`, and the head `model.linear.{weight,bias}`. The tower
maps exactly onto timm's `vit_large_patch14_clip_quickgelu_224` (pre-norm, quick GELU, LayerNorm
eps 1e-5, class token pooled after the final norm = CLIP's pooler output): q, k and v concatenated
into timm's fused qkv, the rest renamed. The head (config.json's "LinearNorm", the released model's)
is an L2 normalisation of the pooled features and a Linear(width, 2); p_fake = softmax[:, 1].

The tower's size is read from the tensors' shapes (width, patch, layers, MLP width; heads = width /
64, CLIP's head size), so a small file of the same architecture loads too (the tests'). A
config.json beside the file, where there is one, must name a CLIP backbone and a head the authors
define ("LinearNorm", or "linear": no normalisation). Anything else is refused with one line naming
the file: not a safetensors file (a cut one too), keys missing or unexpected, shapes that do not fit,
weights that are not finite.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.cli import describe
from training.models.zoo import CheckpointError, non_finite_tensors

logger = logging.getLogger(__name__)

TIMM_NAME = "vit_large_patch14_clip_quickgelu_224"
TOWER = "feature_extractor.vision_model."
PROJECTION = "feature_extractor.visual_projection.weight"  # CLIP's text-image projection: unused by GenD
POSITION_IDS = TOWER + "embeddings.position_ids"  # a buffer older transformers saved: not a weight
HEAD = ("model.linear.weight", "model.linear.bias")
HEAD_SIZE = 64  # CLIP's attention head width (ViT-B and ViT-L alike)
INPUT_SIZE = 224  # CLIP's processor crops 224
HEADS = {"LinearNorm": True, "linear": False}  # config.json's head: normalise the features first?
LAYER_PARTS = (
    "layer_norm1.weight",
    "layer_norm1.bias",
    *(f"self_attn.{p}_proj.{t}" for p in ("q", "k", "v", "out") for t in ("weight", "bias")),
    "layer_norm2.weight",
    "layer_norm2.bias",
    *(f"mlp.fc{n}.{t}" for n in (1, 2) for t in ("weight", "bias")),
)
TOWER_PARTS = (
    "embeddings.class_embedding",
    "embeddings.patch_embedding.weight",
    "embeddings.position_embedding.weight",
    "pre_layrnorm.weight",
    "pre_layrnorm.bias",
    "post_layernorm.weight",
    "post_layernorm.bias",
)
RENAMED = {  # HF's name in a layer -> timm's in a block (q, k, v: concatenated into attn.qkv)
    "layer_norm1": "norm1",
    "layer_norm2": "norm2",
    "self_attn.out_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


@dataclass(frozen=True)
class TowerSize:
    width: int
    patch: int
    layers: int
    mlp: int
    image: int

    @property
    def heads(self) -> int:
        return self.width // HEAD_SIZE


class GenDNetwork(nn.Module):
    """The tower's pooled features, L2-normalised where the head says so, through Linear(width, 2)."""

    def __init__(self, tower: nn.Module, linear: nn.Linear, normalise: bool = True):
        super().__init__()
        self.tower, self.linear, self.normalise = tower, linear, normalise

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.tower(images)
        return self.linear(F.normalize(features, p=2, dim=1) if self.normalise else features)


@dataclass
class GenDModel:
    """One GenD file loaded: `name` (the file's), its `weight` in the ensemble, the timm `encoder`
    its tower is, `input_size`, the tower's `size`."""

    name: str
    network: GenDNetwork
    weight: float = 1.0
    encoder: str = TIMM_NAME
    input_size: int = INPUT_SIZE
    size: TowerSize | None = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(images)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors, or a CheckpointError naming it (missing, not safetensors, cut short)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason})") from None


def head_normalises(path: Path) -> bool:
    """Whether the head normalises its input: config.json beside the file says ("LinearNorm", the
    released model's; a config that names no head is their default, "linear"); without a config,
    the released model's ("LinearNorm")."""
    config_path = path.with_name("config.json")
    if not config_path.is_file():
        return True
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{config_path}: not a readable JSON file ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: not a GenD config (a JSON object is expected)")
    # their GenDConfig's defaults (src/hf/modeling_gend.py): a config without `head` is the plain linear head
    backbone, head = str(config.get("backbone", "openai/clip-vit-large-patch14")), config.get("head", "linear")
    if "clip" not in backbone.lower():
        raise CheckpointError(f"{config_path}: backbone {backbone!r} is not a CLIP one (only GenD's CLIP model loads)")
    if head not in HEADS:
        raise CheckpointError(f"{config_path}: head {head!r} is none of GenD's ({', '.join(HEADS)})")
    return HEADS[head]


def _shown(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def tower_size(state: dict[str, torch.Tensor], source: Path) -> TowerSize:
    """The tower's size from its tensors; a CheckpointError where the keys are not GenD's."""
    layer_numbers = {
        int(m.group(1)) for key in state if (m := re.match(re.escape(TOWER) + r"encoder\.layers\.(\d+)\.", key))
    }
    layers = max(layer_numbers, default=-1) + 1
    expected = {TOWER + part for part in TOWER_PARTS} | set(HEAD)
    expected |= {f"{TOWER}encoder.layers.{n}.{part}" for n in range(layers) for part in LAYER_PARTS}
    missing = expected - set(state)
    unexpected = set(state) - expected - {PROJECTION, POSITION_IDS}
    if missing or unexpected or not layers:
        problems = [f"missing {_shown(missing)}"] * bool(missing) + [f"unexpected {_shown(unexpected)}"] * bool(
            unexpected
        )
        raise CheckpointError(
            f"{source}: not a GenD model (keys {TOWER}*, model.linear.*): " + ("; ".join(problems) or "no layers")
        )
    patch_weight = state[TOWER + "embeddings.patch_embedding.weight"]
    width = state[TOWER + "embeddings.class_embedding"].numel()
    positions = state[TOWER + "embeddings.position_embedding.weight"].shape[0]
    patch = patch_weight.shape[-1] if patch_weight.ndim == 4 else 0
    grid = round((positions - 1) ** 0.5)
    size = TowerSize(width, patch, layers, state[f"{TOWER}encoder.layers.0.mlp.fc1.weight"].shape[0], grid * patch)
    if width % HEAD_SIZE or not patch or grid * grid != positions - 1 or size.image != INPUT_SIZE:
        raise CheckpointError(
            f"{source}: the tower's shapes are not a CLIP ViT's at {INPUT_SIZE} px (width {width}, patch {patch}, "
            f"{positions} positions; the width must be a multiple of {HEAD_SIZE})"
        )
    return size


def expected_shapes(size: TowerSize) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the authors' file of a tower of `size` (the unused projection aside)."""
    width, mlp = size.width, size.mlp
    shapes = {
        TOWER + "embeddings.class_embedding": (width,),
        TOWER + "embeddings.patch_embedding.weight": (width, 3, size.patch, size.patch),
        TOWER + "embeddings.position_embedding.weight": ((size.image // size.patch) ** 2 + 1, width),
        HEAD[0]: (2, width),
        HEAD[1]: (2,),
    }
    shapes.update({TOWER + part: (width,) for part in TOWER_PARTS if "layernorm" in part or "layrnorm" in part})
    for n in range(size.layers):
        for part in LAYER_PARTS:
            if "mlp.fc1" in part:
                shape = (mlp, width) if part.endswith("weight") else (mlp,)
            elif "mlp.fc2" in part:
                shape = (width, mlp) if part.endswith("weight") else (width,)
            else:
                shape = (width, width) if "proj.weight" in part else (width,)
            shapes[f"{TOWER}encoder.layers.{n}.{part}"] = shape
    return shapes


def timm_state(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """The tower's tensors under timm's names (q, k, v concatenated into qkv), as float32."""

    def get(key: str) -> torch.Tensor:
        return state[TOWER + key].float()

    mapped = {
        "cls_token": get("embeddings.class_embedding").reshape(1, 1, -1),
        "pos_embed": get("embeddings.position_embedding.weight").unsqueeze(0),
        "patch_embed.proj.weight": get("embeddings.patch_embedding.weight"),
        "norm_pre.weight": get("pre_layrnorm.weight"),
        "norm_pre.bias": get("pre_layrnorm.bias"),
        "norm.weight": get("post_layernorm.weight"),
        "norm.bias": get("post_layernorm.bias"),
    }
    for n in range(layers):
        theirs, ours = f"encoder.layers.{n}.", f"blocks.{n}."
        for old, new in RENAMED.items():
            for kind in ("weight", "bias"):
                mapped[f"{ours}{new}.{kind}"] = get(f"{theirs}{old}.{kind}")
        for kind in ("weight", "bias"):
            mapped[f"{ours}attn.qkv.{kind}"] = torch.cat([get(f"{theirs}self_attn.{p}_proj.{kind}") for p in "qkv"])
    return mapped


def build_tower(size: TowerSize) -> nn.Module:
    """timm's CLIP ViT (quick GELU) at `size`, without weights (on the meta device: the file's are assigned)."""
    import timm

    with torch.device("meta"):
        return timm.create_model(
            TIMM_NAME,
            pretrained=False,
            num_classes=0,
            embed_dim=size.width,
            depth=size.layers,
            num_heads=size.heads,
            mlp_ratio=size.mlp / size.width,
            patch_size=size.patch,
            img_size=size.image,
        )


def load_network(path: Path) -> tuple[GenDNetwork, TowerSize]:
    """The network of a GenD file, on the CPU in float32; a CheckpointError naming the file where it is not one."""
    path = Path(path)
    state = read_safetensors(path)
    size = tower_size(state, path)
    normalise = head_normalises(path)
    not_floating = [key for key, value in state.items() if key != POSITION_IDS and not value.is_floating_point()]
    if not_floating:
        raise CheckpointError(f"{path}: weights that are not floating point numbers: {_shown(not_floating)}")
    not_finite = non_finite_tensors({k: v for k, v in state.items() if k != PROJECTION})
    if not_finite:
        raise CheckpointError(f"{path}: weights that are NaN or infinite: {_shown(not_finite)}")
    wrong = [
        f"{key} {tuple(state[key].shape)} vs {shape}"
        for key, shape in expected_shapes(size).items()
        if tuple(state[key].shape) != shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: shapes that do not fit a CLIP ViT of width {size.width}: {_shown(wrong, 3)}")
    tower, mapped = build_tower(size), timm_state(state, size.layers)
    linear_weight, linear_bias = (state[key].float() for key in HEAD)
    try:
        tower.load_state_dict(mapped, strict=True, assign=True)
    except RuntimeError as error:  # a size timm cannot build exactly (an MLP width it rounds otherwise)
        raise CheckpointError(f"{path}: timm's CLIP ViT cannot take its weights ({describe(error)})") from None
    linear = nn.Linear(size.width, 2)
    linear.load_state_dict({"weight": linear_weight, "bias": linear_bias})
    logger.info("%s: GenD, CLIP ViT width %d, %d layers, patch %d", path.name, size.width, size.layers, size.patch)
    return GenDNetwork(tower, linear, normalise).eval(), size


def load_model(path: Path, weight: float = 1.0, device: torch.device | str = "cpu") -> GenDModel:
    network, size = load_network(path)
    return GenDModel(Path(path).name, network.to(device), float(weight), size=size)
