"""Foundation-model encoders (timm CLIP / DINOv2 ViTs) tuned in LayerNorms, LoRA factors or the head."""

from __future__ import annotations

import pytest
import torch

from common.cli import InputError
from inference.models.ensemble import load_member
from tests.conftest import REPO_ROOT
from tests.training_data import make_crop_dataset
from training import train as train_module
from training.loop.builders import build_model
from training.models.tuning import apply_tuning
from training.models.zoo import create_model, encoder_spec, normalization, read_checkpoint

TINY_VIT = "model.encoder_args={depth: 2, embed_dim: 32, num_heads: 2, img_size: 32}"


@pytest.fixture(scope="module")
def crop_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vit_crops")
    make_crop_dataset(root, groups=4, fakes_per_group=1, crops=4, size=40)
    return root


def train_tiny_vit(crop_data, out, config: str, *settings: str):
    args = [
        *("--config", str(REPO_ROOT / "configs" / config), "--fold", "0", "--seed", "5", "--workers", "0"),
        *("--batch-size", "4", "--epochs", "1", "--batches-per-epoch", "3", "--lr", "0.01"),
        *("--set", "model.pretrained=false", "--set", "model.input_size=32", "--set", TINY_VIT),
        *("--set", "data.val_frame_modulo=1", "--set", "training.amp=false"),
        *("--set", "data.min_class_crops=4"),  # a tiny set: 8 crops of each class per split
        *(item for setting in settings for item in ("--set", setting)),
        *("--data-dir", str(crop_data), "--output-dir", str(out)),
    ]
    parsed = train_module.parse_args(args)
    config = train_module.resolve_config(parsed)
    torch.manual_seed(parsed.seed)  # what train() does before it builds the model: the same start
    start = {k: v.clone() for k, v in build_model(config).state_dict().items()}
    train_module.train(parsed)
    run = f"{parsed.config.stem}_0_5"
    return start, read_checkpoint(out / f"{run}_last.pt"), out / f"{run}_last.pt"


def changed_keys(start: dict, trained: dict) -> set[str]:
    return {key for key, value in trained.items() if not torch.equal(value, start[key])}


def test_layernorm_tuning_changes_only_layernorms_and_the_head(crop_data, tmp_path):
    start, checkpoint, _ = train_tiny_vit(crop_data, tmp_path, "clip_vit_l14.yaml", "model.encoder=clip_vit_b16")
    changed = changed_keys(start, checkpoint["state_dict"])
    model = build_model(train_module.resolve_config(train_module.parse_args(
        ["--config", str(REPO_ROOT / "configs" / "clip_vit_l14.yaml"), "--data-dir", ".",
         "--set", "model.pretrained=false", "--set", TINY_VIT, "--set", "model.encoder=clip_vit_b16"]
    )))  # fmt: skip
    layernorm_keys = {
        f"{name}.{kind}"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.LayerNorm)
        for kind in ("weight", "bias")
    }
    assert {"fc.weight", "fc.bias"} <= changed
    assert changed - {"fc.weight", "fc.bias"} <= layernorm_keys
    assert len(changed & layernorm_keys) >= 4  # the blocks' norms moved, not only the head
    assert "encoder.blocks.0.attn.qkv.weight" not in changed and "encoder.patch_embed.proj.weight" not in changed


def test_lora_trains_low_rank_factors_and_inference_rebuilds_them(crop_data, tmp_path):
    start, checkpoint, path = train_tiny_vit(
        crop_data, tmp_path, "clip_vit_b16_lora.yaml", "data.fakes=dataset", "data.batch_size=4"
    )
    state = checkpoint["state_dict"]
    changed = changed_keys(start, state)
    assert "encoder.blocks.0.attn.qkv.lora_b" in changed and "encoder.blocks.1.attn.proj.lora_a" in changed
    assert changed <= {key for key in state if key.endswith(("lora_a", "lora_b"))} | {"fc.weight", "fc.bias"}
    assert torch.equal(state["encoder.blocks.0.attn.qkv.base.weight"], start["encoder.blocks.0.attn.qkv.base.weight"])
    member = load_member(path, torch.device("cpu"))
    assert member.input_size == 32 and member.mean == pytest.approx(normalization("clip_vit_b16")[0])
    images = torch.randn(2, 3, 32, 32)
    model = build_model(checkpoint["config"])
    model.load_state_dict(state)
    model.eval()
    assert torch.allclose(member(images), model(images), atol=1e-6)
    # B starts at zero: before training, the LoRA model is the plain one
    torch.manual_seed(0)
    plain = create_model("clip_vit_b16", input_size=32, encoder_args={"depth": 2, "embed_dim": 32, "num_heads": 2})
    torch.manual_seed(0)
    wrapped = create_model("clip_vit_b16", input_size=32, encoder_args={"depth": 2, "embed_dim": 32, "num_heads": 2})
    apply_tuning(wrapped, {"train_only": "lora", "lora_targets": ["qkv", "proj"]})
    plain.eval(), wrapped.eval()
    assert torch.allclose(plain(images), wrapped(images), atol=1e-6)


def test_foundation_encoders_take_their_pretrained_normalisation_and_size():
    assert normalization("clip_vit_l14")[0] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert encoder_spec("clip_vit_l14").input_size == 224 and encoder_spec("dinov2_vit_b14").input_size == 224
    dinov2 = create_model("dinov2_vit_b14", encoder_args={"depth": 1})
    assert dinov2.encoder.patch_embed.img_size == (224, 224)  # 518 px pretraining, resampled to 224
    assert dinov2(torch.randn(1, 3, 224, 224)).shape == (1, 1)


def test_train_only_refuses_what_the_encoder_does_not_have():
    with pytest.raises(InputError, match="has no LayerNorm"):
        apply_tuning(create_model("resnet18"), {"encoder": "resnet18", "train_only": "layernorm"})
    with pytest.raises(InputError, match="LoRA is for transformer encoders"):
        apply_tuning(create_model("resnet18"), {"encoder": "resnet18", "train_only": "lora"})
    with pytest.raises(InputError, match="must be one of all, head, layernorm, lora"):
        apply_tuning(create_model("resnet18"), {"train_only": "bias"})
    head_only = create_model("resnet18")
    counts = apply_tuning(head_only, {"train_only": "head"})
    assert counts["trainable"] == head_only.fc.weight.numel() + 1
