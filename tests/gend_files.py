"""GenD model files for the tests, in the authors' format (yermandy/GenD_CLIP_L_14's model.safetensors:
the Hugging Face module tree of src/hf/modeling_gend.py), with random weights and a small tower of
the same architecture (the released one is 1.2 GB), and the HF CLIPVisionModel forward (transformers
4.56.2, eager attention) re-derived as functions, the oracle the timm tower is checked against."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

PREFIX = "feature_extractor.vision_model."
SMALL = {"width": 128, "layers": 2, "mlp": 512, "patch": 14, "image": 224, "projection": 64}
LAYER_NORM_EPS = 1e-5
PROJECTIONS = ("q_proj", "k_proj", "v_proj")


def shapes(width=128, layers=2, mlp=512, patch=14, image=224, projection=64) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in the authors' file of a tower of this size (the released: 1024, 24, 4096, 14, 224, 768)."""
    tokens = (image // patch) ** 2 + 1
    found = {
        PREFIX + "embeddings.class_embedding": (width,),
        PREFIX + "embeddings.patch_embedding.weight": (width, 3, patch, patch),
        PREFIX + "embeddings.position_embedding.weight": (tokens, width),
        "feature_extractor.visual_projection.weight": (projection, width),
        "model.linear.weight": (2, width),
        "model.linear.bias": (2,),
    }
    for name in ("pre_layrnorm", "post_layernorm"):
        found.update({f"{PREFIX}{name}.weight": (width,), f"{PREFIX}{name}.bias": (width,)})
    for n in range(layers):
        layer = f"{PREFIX}encoder.layers.{n}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            found.update({f"{layer}self_attn.{name}.weight": (width, width), f"{layer}self_attn.{name}.bias": (width,)})
        for name in ("layer_norm1", "layer_norm2"):
            found.update({f"{layer}{name}.weight": (width,), f"{layer}{name}.bias": (width,)})
        found.update({f"{layer}mlp.fc1.weight": (mlp, width), f"{layer}mlp.fc1.bias": (mlp,)})
        found.update({f"{layer}mlp.fc2.weight": (width, mlp), f"{layer}mlp.fc2.bias": (width,)})
    return found


def random_state(seed=0, head_scale=100.0, **size) -> dict[str, torch.Tensor]:
    """The authors' keys (`shapes` of `size`), random values: LayerNorms near 1 and biases near 0 but
    not at them, the patch embedding and the head large enough that p_fake spreads over (0, 1) from
    image to image."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes(**size).items():
        if key.endswith("norm.weight") or "norm1.weight" in key or "norm2.weight" in key:
            mean, std = 1.0, 0.1
        elif key == "model.linear.weight":
            mean, std = 0.0, head_scale / shape[1] ** 0.5
        elif key.endswith("bias") or key.endswith("class_embedding"):
            mean, std = 0.0, 0.5 if key.endswith("class_embedding") else 0.1
        elif "position_embedding" in key or "patch_embedding" in key:
            mean, std = 0.0, 0.1
        else:
            mean, std = 0.0, 0.08
        state[key] = (torch.randn(*shape, generator=g) * std + mean).float()
    return state


def write_model(path: Path, state: dict | None = None, **size) -> Path:
    """A model.safetensors in the authors' format at `path` (a small random one by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state if state is not None else random_state(**size), str(path), metadata={"format": "pt"})
    return path


def clip_vision_pooled(state: dict, pixels: torch.Tensor, head_size: int = 64) -> torch.Tensor:
    """CLIPVisionTransformer's pooler output (modeling_clip.py, transformers 4.56.2): patch convolution
    without bias, class embedding first, absolute positions, pre_layrnorm; per layer x + attn(ln1(x)),
    then x + mlp(ln2(x)) with quick GELU; post_layernorm of the class token."""

    def w(key):
        return state[PREFIX + key].double()

    def layer_norm(x, name):
        return F.layer_norm(x, x.shape[-1:], w(f"{name}.weight"), w(f"{name}.bias"), LAYER_NORM_EPS)

    patch_weight = w("embeddings.patch_embedding.weight")
    x = F.conv2d(pixels.double(), patch_weight, stride=patch_weight.shape[-1]).flatten(2).transpose(1, 2)
    batch, _, width = x.shape
    x = torch.cat([w("embeddings.class_embedding").expand(batch, 1, width), x], dim=1)
    x = layer_norm(x + w("embeddings.position_embedding.weight")[None], "pre_layrnorm")
    heads = width // head_size
    layer = 0
    while f"{PREFIX}encoder.layers.{layer}.mlp.fc1.weight" in state:
        p = f"encoder.layers.{layer}."

        def project(h, name, p=p):
            return F.linear(h, w(f"{p}self_attn.{name}.weight"), w(f"{p}self_attn.{name}.bias"))

        h = layer_norm(x, p + "layer_norm1")
        q, k, v = (project(h, n).view(batch, -1, heads, head_size).transpose(1, 2) for n in PROJECTIONS)
        attention = torch.softmax((q @ k.transpose(2, 3)) * head_size**-0.5, dim=-1)
        x = x + project((attention @ v).transpose(1, 2).reshape(batch, -1, width), "out_proj")
        h = F.linear(layer_norm(x, p + "layer_norm2"), w(p + "mlp.fc1.weight"), w(p + "mlp.fc1.bias"))
        h = h * torch.sigmoid(1.702 * h)
        x = x + F.linear(h, w(p + "mlp.fc2.weight"), w(p + "mlp.fc2.bias"))
        layer += 1
    return layer_norm(x[:, 0, :], "post_layernorm")


def gend_p_fake(state: dict, pixels: torch.Tensor) -> torch.Tensor:
    """GenD's p_fake (modeling_gend.py, head "LinearNorm"): softmax(Linear(normalize(pooled)))[:, 1]."""
    features = F.normalize(clip_vision_pooled(state, pixels), p=2, dim=1)
    logits = F.linear(features, state["model.linear.weight"].double(), state["model.linear.bias"].double())
    return torch.softmax(logits, dim=1)[:, 1]
