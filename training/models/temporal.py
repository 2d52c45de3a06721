"""Temporal models: a frame encoder reads every crop of a clip (T consecutive crops of one face
track), a sequence head reads the crops' features in order and gives the clip one probability.

A fake that is convincing frame by frame but flickers between frames is what a frame model
cannot see. The encoder is any zoo encoder, from scratch, from ImageNet, or from a frame
checkpoint of ours (`temporal.encoder_checkpoint`), optionally frozen; the head is a GRU or an
LSTM (bidirectional or not) or a small transformer (`temporal.head`). Training reuses the frame
models' loop, loss, sampling, fold split, amp, DDP, resume and checkpoints: only the model and
the dataset differ.

A clip is augmented as one: every crop of it gets the same geometric and colour transform and
the same cutout choice (the random state is the clip's, not the frame's; `temporal.clip_cutouts:
false` draws each crop's cutout on its own), and, if asked (`temporal.frame_noise`), its own
Gaussian noise on top.
"""

from __future__ import annotations

import logging
import reprlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from training.data.dataset import CropDataset, repeated_draws, to_tensor
from training.models.pretrained import create_encoder
from training.models.zoo import encoder_spec, load_weights, read_checkpoint

logger = logging.getLogger(__name__)

HEADS = ("gru", "lstm", "transformer")
MAX_CLIP_LENGTH = 256
# A checkpoint's head sizes are built before its weights are read: bounded, so that a small file
# cannot ask for a head of tens of GB (a GRU of 2**16 units holds 13 G numbers). The configs use
# 64 to 256 units in one layer.
MAX_HIDDEN = 4096
MAX_LAYERS = 8
MAX_FRAME_STEP = 2**16


def temporal_settings_problem(settings) -> str | None:
    """Why a checkpoint's `temporal` settings cannot rebuild its model and clips, or None: the
    head's kind and sizes, and the clip's length and frame step, as training wrote them."""
    if not isinstance(settings, dict):
        return f"a temporal checkpoint needs its `temporal` settings, got {type(settings).__name__}"
    whole = ("hidden", "layers", "clip_length")
    flags = ("bidirectional", "freeze_encoder")
    missing = [key for key in ("head", *whole, *flags, "dropout") if key not in settings]
    if missing:
        return f"its `temporal` settings lack {', '.join(missing)}"
    if settings["head"] not in HEADS:
        return f"`temporal.head` {settings['head']!r} is not one of {', '.join(HEADS)}"
    most = {"hidden": MAX_HIDDEN, "layers": MAX_LAYERS, "clip_length": MAX_CLIP_LENGTH, "frame_step": MAX_FRAME_STEP}
    for key in (*whole, "frame_step"):
        value = settings.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"`temporal.{key}` {reprlib.repr(value)} is not a whole number above 0"
        if value > most[key]:
            return f"`temporal.{key}` {value} is more than {most[key]}"
    for key in flags:
        if not isinstance(settings[key], bool):
            return f"`temporal.{key}` {settings[key]!r} is not true or false"
    dropout = settings["dropout"]
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        return f"`temporal.dropout` {dropout!r} is not a number from 0 to below 1"
    return None


class TemporalClassifier(nn.Module):
    """(batch, T, 3, H, W) clips -> (batch, 1) logits."""

    def __init__(
        self,
        encoder: nn.Module,
        head: str = "gru",
        hidden: int = 128,
        layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        freeze_encoder: bool = False,
    ):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"temporal.head must be one of {', '.join(HEADS)}, got {head!r}")
        self.encoder = encoder
        for parameter in encoder.get_classifier().parameters():  # kept for the layout, never run
            parameter.requires_grad_(False)
        self.freeze_encoder = freeze_encoder
        if freeze_encoder:
            for parameter in encoder.parameters():
                parameter.requires_grad_(False)
        self.avg_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.head_kind = head
        features = encoder.num_features
        if head == "transformer":
            self.project = nn.Linear(features, hidden)
            layer = nn.TransformerEncoderLayer(
                hidden, nhead=4, dim_feedforward=2 * hidden, dropout=dropout, batch_first=True
            )
            self.sequence = nn.TransformerEncoder(layer, layers)
            width = hidden
        else:
            recurrent = nn.GRU if head == "gru" else nn.LSTM
            self.project = nn.Identity()
            self.sequence = recurrent(features, hidden, layers, batch_first=True, bidirectional=bidirectional)
            width = hidden * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(width, 1)

    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        """(batch, T, features): the encoder's pooled features of every crop."""
        batch, length = clips.shape[:2]
        frames = clips.flatten(0, 1)
        if frames.device.type == "cuda" or next(self.encoder.parameters()).is_contiguous(
            memory_format=torch.channels_last
        ):
            frames = frames.contiguous(memory_format=torch.channels_last)
        features = self.avg_pool(self.encoder.forward_features(frames)).flatten(1)
        return features.view(batch, length, -1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        features = self.project(self.frame_features(clips))
        sequence = self.sequence(features)
        output = sequence[0] if isinstance(sequence, tuple) else sequence
        return self.fc(self.dropout(output.mean(dim=1)))

    def head_parameters(self) -> list[nn.Parameter]:
        """What trains while the encoder is frozen (freeze_epochs): projection, sequence head and fc."""
        return [*self.project.parameters(), *self.sequence.parameters(), *self.fc.parameters()]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoder:  # a frozen encoder keeps its batch-norm statistics too
            self.encoder.eval()
        return self


def encoder_state(checkpoint_state: dict) -> dict:
    """The encoder's weights out of a frame classifier's state dict (ours or the original's)."""
    state = {}
    for key, value in checkpoint_state.items():
        name = key.removeprefix("module.")
        if name.startswith("encoder."):
            state[name.removeprefix("encoder.")] = value
    return state


def frame_step(rows: pd.DataFrame) -> int:
    """The usual gap in frames between consecutive crops of a track (preprocessing's `every`)."""
    gaps = rows.sort_values(["video", "track", "frame"]).groupby(["video", "track"])["frame"].diff().dropna()
    gaps = gaps[gaps > 0]
    return int(gaps.median()) if len(gaps) else 1


def clip_windows(rows: pd.DataFrame, length: int, stride: int) -> list[list[int]]:
    """Row positions of every window of `length` consecutive crops of one track, `stride` crops
    apart (tracks shorter than `length` give one clip, their last crop repeated)."""
    clips = []
    ordered = rows.assign(position=np.arange(len(rows))).sort_values(["video", "track", "frame"], kind="stable")
    for _, track in ordered.groupby(["video", "track"], sort=True):
        positions = track["position"].tolist()
        if len(positions) < length:
            clips.append(positions + [positions[-1]] * (length - len(positions)))
            continue
        clips += [positions[start : start + length] for start in range(0, len(positions) - length + 1, stride)]
    return clips


class ClipDataset(torch.utils.data.Dataset):
    """Clips of T crops of one track, with their video's label; each epoch all real clips and as
    many fake clips drawn afresh (training), or every non-overlapping clip (validation)."""

    def __init__(
        self,
        data_dir: str | Path,
        rows: pd.DataFrame,
        train: bool,
        size: int,
        mean,
        std,
        length: int,
        label_smoothing: float = 0.01,
        cutouts: bool = True,
        frame_noise: float = 0.0,
        clip_cutouts: bool = True,
        augment_strength: float = 1.0,
    ):
        if "track" not in rows.columns:
            raise ValueError("folds.csv has no `track` column: run python -m preprocess.folds again")
        self.rows = rows.reset_index(drop=True)
        self.crops = CropDataset(
            data_dir, self.rows, train, size, mean, std, label_smoothing, cutouts, augment_strength=augment_strength
        )
        self.train, self.length, self.frame_noise, self.clip_cutouts = train, length, frame_noise, clip_cutouts
        self.clips = clip_windows(self.rows, length, stride=1 if train else length)
        self.samples = self.clips
        self.epoch_seed = 0
        self.min_samples = 0  # an epoch shorter than this draws again (training/loop/builders.py epoch_length)

    def reset(self, epoch: int, seed: int) -> None:
        if not self.train:
            return
        parts = repeated_draws(lambda draw: self._draw(epoch, seed, draw), self.min_samples)
        self.samples = [clip for part in parts for clip in part]
        self.epoch_seed = int(np.random.default_rng([seed, epoch, 1]).integers(2**31))

    def _draw(self, epoch: int, seed: int, draw: int) -> list[list[int]]:
        """Every real clip and as many fake ones, shuffled; fixed by (seed, epoch, draw)."""
        rng = np.random.default_rng([seed, epoch] if draw == 0 else [seed, epoch, 2, draw])
        labels = self.rows["label"].to_numpy()
        real = [clip for clip in self.clips if labels[clip[0]] == 0]
        fake = [clip for clip in self.clips if labels[clip[0]] == 1]
        count = min(len(fake), len(real)) if real else len(fake)
        chosen = [fake[i] for i in rng.choice(len(fake), size=count, replace=False)] if count else []
        both = real + chosen
        return [both[i] for i in rng.permutation(len(both))]

    def __len__(self) -> int:
        return len(self.samples)

    def clip_seed(self, index: int) -> int:
        return (self.epoch_seed * 1_000_003 + index) % 2**32

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self.samples)):
            position = (index + attempt) % len(self.samples)
            try:
                return self._clip(position, replaced=attempt)
            except (OSError, ValueError, cv2.error) as error:
                logger.warning("unreadable crop in clip %d (%s): replaced by another clip", position, error)
        raise RuntimeError(f"none of the {len(self.samples)} clips can be read")

    def _clip(self, index: int, replaced: int) -> dict:
        clip = self.samples[index]
        seed = self.clip_seed(index)  # one random state for every crop of the clip
        frames = [
            self.crops.augmented(self.rows.iloc[position], seed, None if self.clip_cutouts else seed + 1 + k)
            for k, position in enumerate(clip)
        ]
        images = torch.stack([to_tensor(image, self.crops.mean, self.crops.std) for image, _ in frames])
        if self.train and self.frame_noise > 0:
            generator = torch.Generator().manual_seed(seed)
            images = images + self.frame_noise * torch.randn(images.shape, generator=generator)
        first = self.rows.iloc[clip[0]]
        return {
            "image": images,
            "label": torch.tensor([frames[0][1]], dtype=torch.float32),
            "video": first["video"],
            "file": first["file"],
            "replaced": replaced,
        }


def create_temporal_model(model: dict, temporal: dict) -> TemporalClassifier:
    """The temporal classifier of a resolved config's `model` and `temporal` sections; its
    encoder from `temporal.encoder_checkpoint` (a frame checkpoint) when one is given."""
    spec = encoder_spec(model["encoder"])
    rate = spec.drop_path_rate if model.get("drop_path_rate") is None else model["drop_path_rate"]
    kwargs = {} if rate is None else {"drop_path_rate": rate}
    encoder = create_encoder(spec.timm_name, model.get("pretrained", False), model.get("pretrained_file"), **kwargs)
    source = temporal.get("encoder_checkpoint")
    if source:
        load_weights(encoder, encoder_state(read_checkpoint(source)["state_dict"]), f"{source} (encoder)")
        logger.info("temporal encoder initialised from %s", source)
    return TemporalClassifier(
        encoder,
        temporal["head"],
        temporal["hidden"],
        temporal["layers"],
        temporal["bidirectional"],
        temporal["dropout"],
        temporal["freeze_encoder"],
    )
