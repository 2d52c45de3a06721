"""Explanations: heatmaps land on the part of the face that raised the fake score, crops map back
from the model's canvas, colours follow the score, and report.html carries everything itself."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from inference.models.ensemble import Member, face_batch
from inference.models.heatmaps import cam_on_crop, face_heatmaps, placement
from inference.serving.explain import report_html, score_colour


class _BrightnessEncoder(nn.Module):
    """Features = the image's brightness (a positive 1x1 convolution, full resolution)."""

    feature_info = [{"module": "features"}]

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
        nn.init.constant_(self.features[0].weight, 1 / 3)
        nn.init.zeros_(self.features[0].bias)


class _BrightIsFake(nn.Module):
    """A classifier whose fake logit grows with the brightness anywhere in the face."""

    def __init__(self):
        super().__init__()
        self.encoder = _BrightnessEncoder()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.features(images).mean(dim=(1, 2, 3))[:, None]


def _member(weight: float = 1.0, size: int = 64) -> Member:
    return Member("bright", _BrightIsFake().eval(), "toy", size, (0.0,) * 3, (1.0,) * 3, weight)


@pytest.mark.parametrize("shape", [(40, 80, 3), (90, 30, 3), (64, 64, 3), (20, 20, 3)])
def test_placement_is_where_face_batch_puts_the_crop(shape):
    crop = np.full(shape, 200, np.uint8)
    canvas = face_batch([crop], _member())[0, 0].numpy()
    rows, cols = np.nonzero(canvas)
    top, left, height, width = placement(shape, 64)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (top, top + height, left, left + width)


def test_cam_on_crop_cuts_the_crop_out_of_the_canvas():
    cam = np.zeros((64, 64), np.float32)
    cam[16:48, :32] = 1.0  # the left half of where a 40x80 crop lies
    heat = cam_on_crop(cam, (40, 80, 3))
    assert heat.shape == (40, 80)
    assert heat[:, :36].min() > 0.9 and heat[:, 44:].max() < 0.1


def test_the_heatmap_is_hot_where_the_face_made_the_model_say_fake():
    crop = np.zeros((48, 96, 3), np.uint8)
    crop[8:40, 60:90] = 255  # a bright patch on the right: the only thing raising the fake logit
    [heat] = face_heatmaps([_member(1.0), _member(3.0, size=96)], [crop], torch.device("cpu"))
    assert heat.shape == (48, 96) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat[12:36, 64:86].mean() > 0.8, "hot on the bright patch"
    assert heat[:, :50].max() < 0.1, "cold where nothing raised the score"


def test_colours_go_from_green_through_yellow_to_red():
    assert score_colour(0.0) == (0, 255, 0) and score_colour(0.5) == (255, 255, 0) and score_colour(1.0) == (255, 0, 0)
    assert score_colour(7.0) == (255, 0, 0)


def test_the_report_embeds_its_images_and_names_errors(tmp_path):
    plot = tmp_path / "probability.png"
    plot.write_bytes(b"\x89PNG fake bytes")
    judged = {
        "file": "clips/a<b>.mp4",
        "verdict": "FAKE",
        "probability": 0.91,
        "threshold": 0.5,
        "faces": 3,
        "people": [{"person": 0}],
        "frames": {"sampled": 32, "with_face": 3},
        "models": [{"name": "m.pt", "score": 0.91}],
        "error": None,
        "explanation": {
            "plot": str(plot),
            "frame": None,
            "heatmaps": [{"path": str(plot), "frame": 4, "probability": 0.9}],
        },
    }
    failed = {"file": "broken.mp4", "error": {"stage": "decode", "message": "not a readable video container"}}
    page = report_html([judged, failed])
    assert "clips/a&lt;b&gt;.mp4" in page, "names are escaped"
    assert "FAKE &mdash; P(fake) 0.910" in page and "error: not a readable video container" in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 2 and all(source.startswith("data:image/png;base64,") for source in sources)


def _bright_is_fake_vit(input_size: int = 64) -> nn.Module:
    """timm's ViT (a 4x4 grid of 16 px patches, one class token) wired by hand so that its fake
    logit is the mean brightness of the patch tokens that reach the class token through the last
    attention: channel 0 of a patch token = its brightness, the last attention averages every token
    into the class token, and the head reads channel 0. Norms are identities, so nothing rescales."""
    from training.models.zoo import create_model

    model = create_model(
        "clip_vit_b16", input_size=input_size, encoder_args={"depth": 2, "embed_dim": 8, "num_heads": 2}
    )
    encoder = model.encoder
    for name in ("norm_pre", "norm", "fc_norm"):
        setattr(encoder, name, nn.Identity())
    for block in encoder.blocks:
        block.norm1, block.norm2 = nn.Identity(), nn.Identity()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        encoder.patch_embed.proj.weight[0] = 1.0 / encoder.patch_embed.proj.weight[0].numel()
        last = encoder.blocks[-1].attn
        dim = encoder.embed_dim
        last.qkv.weight[2 * dim : 3 * dim] = torch.eye(dim)  # q = k = 0: equal attention; v = the tokens
        last.proj.weight.copy_(torch.eye(dim))
        model.fc.weight[0, 0] = 1.0
    return model.eval()


def test_a_vision_transformer_gets_heatmaps_from_its_patch_tokens():
    model = _bright_is_fake_vit()
    member = Member("vit", model, "clip_vit_b16", 64, (0.5,) * 3, (0.25,) * 3)
    crop = np.zeros((64, 64, 3), np.uint8)
    crop[0:16, 32:64] = 255  # the top row's two right patches: up in the crop, not down the diagonal
    with torch.no_grad():
        brighter = model(face_batch([crop], member)) > model(face_batch([np.zeros_like(crop)], member))
    assert brighter.item(), "the wiring: brightness raises the fake logit"
    (heat,) = face_heatmaps([member], [crop], torch.device("cpu"))
    assert heat.shape == (64, 64) and heat.min() >= 0.0 and heat.max() <= 1.0
    assert heat[2:14, 36:60].mean() > 0.8, "hot on the bright patches"
    assert heat[24:, :].max() < 0.1 and heat[:, :24].max() < 0.1, "cold where the crop is dark"
    assert heat[36:60, 2:14].max() < 0.1, "not on the transposed place"
