"""Face crops from folds.csv for training and validation.

Training takes the crops of every fold but one and, each epoch, all real crops plus as many fake
crops drawn afresh; validation takes the held-out fold (every `val_frame_modulo`-th frame). A
crop that cannot be read is logged, counted and replaced by the next one, never a crash.
Randomness depends only on (seed, epoch, index), so a resumed run sees the same samples.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from preprocess.outputs import crops_dir, diffs_dir, landmarks_dir
from training.augment import apply_cutouts, train_transforms, val_transforms

logger = logging.getLogger(__name__)

FOLD_COLUMNS = ["video", "file", "label", "original", "frame", "fold"]


def read_folds(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: folds file missing; run python -m preprocess.folds first")
    frame = pd.read_csv(path, dtype={"video": str, "original": str, "file": str})
    missing = set(FOLD_COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: columns {sorted(missing)} missing (expected {','.join(FOLD_COLUMNS)})")
    return frame


def split_folds(folds: pd.DataFrame, fold: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if fold not in set(folds["fold"]):
        raise ValueError(f"fold {fold} is not in folds.csv (folds: {sorted(set(folds['fold']))})")
    return folds[folds["fold"] != fold].reset_index(drop=True), folds[folds["fold"] == fold].reset_index(drop=True)


def sample_epoch(rows: pd.DataFrame, epoch: int, seed: int) -> pd.DataFrame:
    """All real crops and as many fake crops (all fakes if fewer), shuffled; fixed by (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    real, fake = rows[rows["label"] == 0], rows[rows["label"] == 1]
    count = min(len(fake), len(real)) if len(real) else len(fake)
    chosen = fake.sample(n=count, replace=False, random_state=int(rng.integers(2**31)))
    both = pd.concat([real, chosen])
    return both.iloc[rng.permutation(len(both))].reset_index(drop=True)


def to_tensor(image: np.ndarray, mean, std) -> torch.Tensor:
    array = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


class CropDataset(Dataset):
    def __init__(
        self,
        data_dir: str | Path,
        rows: pd.DataFrame,
        train: bool,
        size: int,
        mean,
        std,
        label_smoothing: float = 0.01,
        cutouts: bool = True,
        val_frame_modulo: int = 1,
    ):
        self.data_dir = Path(data_dir)
        self.rows = rows
        self.train = train
        self.mean, self.std = mean, std
        self.label_smoothing = label_smoothing
        self.cutouts = cutouts
        self.transforms = train_transforms(size) if train else val_transforms(size)
        self.epoch_seed = 0
        if train:
            self.samples = rows
        else:
            every = rows[rows["frame"] % max(1, val_frame_modulo) == 0]
            self.samples = (every if len(every) else rows).reset_index(drop=True)

    def reset(self, epoch: int, seed: int) -> None:
        """Draw this epoch's fakes and order (training only)."""
        if self.train:
            self.samples = sample_epoch(self.rows, epoch, seed)
            self.epoch_seed = int(np.random.default_rng([seed, epoch, 1]).integers(2**31))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        for attempt in range(len(self.samples)):
            position = (index + attempt) % len(self.samples)
            row = self.samples.iloc[position]
            try:
                return self._load(row, position, replaced=attempt)
            except (OSError, ValueError, cv2.error) as error:
                logger.warning("unreadable crop %s/%s (%s): replaced by another", row["video"], row["file"], error)
        raise RuntimeError(f"none of the {len(self.samples)} crops under {self.data_dir / 'crops'} can be read")

    def _load(self, row, position: int, replaced: int) -> dict:
        image, label = self.augmented(row, (self.epoch_seed * 1_000_003 + position) % 2**32)
        return {
            "image": to_tensor(image, self.mean, self.std),
            "label": torch.tensor([label], dtype=torch.float32),
            "video": row["video"],
            "file": row["file"],
            "replaced": replaced,
        }

    def augmented(self, row, seed: int, cutout_seed: int | None = None) -> tuple[np.ndarray, float]:
        """The crop of `row` read and, in training, cut out (by `cutout_seed`, default `seed`) and
        transformed by the random state `seed` (the same seed, the same transform); and its
        label (smoothed in training)."""
        path = crops_dir(self.data_dir, row["video"]) / row["file"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OSError(f"{path} is missing or not an image")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        stem = Path(row["file"]).stem
        diff_path = diffs_dir(self.data_dir, row["video"]) / f"{stem}_diff.png"
        diff = cv2.imread(str(diff_path), cv2.IMREAD_GRAYSCALE) if diff_path.exists() else None
        if diff is None or diff.shape != image.shape[:2]:
            diff = np.zeros(image.shape[:2], np.uint8)
        label = float(row["label"])
        if self.train:
            if self.cutouts:
                landmarks_path = landmarks_dir(self.data_dir, row["original"]) / f"{stem}.npy"
                landmarks = np.load(landmarks_path) if landmarks_path.exists() else None
                cutout_rng = random.Random(seed if cutout_seed is None else cutout_seed)
                image, diff = apply_cutouts(image, diff, landmarks, label > 0.5, cutout_rng)
            self.transforms.set_random_seed(seed)
            label = float(np.clip(label, self.label_smoothing, 1 - self.label_smoothing))
        return self.transforms(image=image, mask=diff)["image"], label
