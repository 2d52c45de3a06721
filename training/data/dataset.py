"""Face crops from folds.csv for training and validation.

Training takes the crops of every fold but one and, each epoch, all real crops plus as many fakes
drawn afresh; validation takes the held-out fold (every `val_frame_modulo`-th frame). Where the
fakes come from is `data.fakes`:
  dataset  the dataset's fakes (the recipe);
  blends   none of them: each real crop comes with a self-blended fake of itself made on the fly
           (training/data/blends.py), so every batch is half reals and half their blends; validation
           too takes the held-out fold's reals and one fixed blend of each, so that no fake of
           the dataset is seen, not even to pick the best epoch;
  both     the dataset's fakes, a `blend_share` of the fake draws replaced by blends of reals.
A blend needs the real crop's landmarks; reals without them are not blended. A crop that cannot
be read is logged, counted and replaced by the next one, never a crash. Randomness depends only
on (seed, epoch, index), so a resumed run sees the same samples.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from preprocess.outputs import crops_dir, diffs_dir, landmarks_dir, parse_crop_name
from training.data.augment import apply_cutouts, cutout_random, seed_transforms, train_transforms, val_transforms
from training.data.blends import self_blend
from training.data.face_input import to_tensor

logger = logging.getLogger(__name__)

FOLD_COLUMNS = ["video", "file", "label", "original", "frame", "fold"]
FAKE_SOURCES = ("dataset", "blends", "both")
BLEND_STREAM = 7  # the blend's random stream, apart from the transform's and the cutout's
BLEND_SUFFIX = "#blend"  # a validation blend's video name: its own video in the video-level score


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


def keep_methods(rows: pd.DataFrame, methods: list[str], where: str) -> pd.DataFrame:
    """The reals of `rows` and the fakes made by one of `methods` (folds.csv's `method` column)."""
    if "method" not in rows.columns:
        raise ValueError(f"{where}: no method column (made before it existed); run python -m preprocess.folds again")
    fakes = rows[rows["label"] == 1]
    kept = rows[(rows["label"] == 0) | rows["method"].isin(list(methods))].reset_index(drop=True)
    if len(fakes) and not (kept["label"] == 1).any():
        raise ValueError(
            f"{where}: no fake made by {', '.join(methods)}; its methods: {', '.join(sorted(set(fakes['method'])))}"
        )
    logger.info(
        "data.train_methods %s: %d of %d fake crops kept", list(methods), (kept["label"] == 1).sum(), len(fakes)
    )
    return kept


def select_crops(
    rows: pd.DataFrame, frame_limit: int | None = None, faces_per_frame: int | None = None, paired_only: bool = False
) -> pd.DataFrame:
    """The crops a run may use: frames below `frame_limit`, the first `faces_per_frame` faces of a
    frame, and with `paired_only` only reals that have a fake and fakes whose original is a real of
    `rows` (the original's generate_folds kept frames < 320, faces 0 and 1, originals with fakes)."""
    keep = pd.Series(True, index=rows.index)
    if frame_limit is not None:
        keep &= rows["frame"] < frame_limit
    if faces_per_frame is not None:
        keep &= rows["file"].map(lambda name: parse_crop_name(name)[1] < faces_per_frame)
    if paired_only:
        fakes, reals = rows[rows["label"] == 1], rows[rows["label"] == 0]
        real_with_fake = (rows["label"] == 0) & rows["video"].isin(set(fakes["original"]))
        fake_with_real = (rows["label"] == 1) & rows["original"].isin(set(reals["video"]))
        keep &= real_with_fake | fake_with_real
    return rows[keep].reset_index(drop=True)


def validation_frames(rows: pd.DataFrame, modulo: int) -> pd.DataFrame:
    """The crops of frames divisible by `modulo` (all of them where none is)."""
    every = rows[rows["frame"] % max(1, modulo) == 0]
    return (every if len(every) else rows).reset_index(drop=True)


def draw_per_video(rows: pd.DataFrame, count: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most `count` crops of each video, drawn by `rng` (all of a video with fewer)."""
    order = rng.permutation(len(rows))
    shuffled = rows.iloc[order]
    return shuffled[shuffled.groupby("video", sort=False).cumcount() < count].sort_index()


def validation_fakes(fakes: str) -> str:
    """Where validation's fakes come from: a blends-only run validates on blends, others on the dataset's."""
    return "blends" if fakes == "blends" else "dataset"


class DegenerateSplitError(ValueError):
    """A fold whose training or validation crops lack a class, or hold too few of one."""


def class_counts(rows: pd.DataFrame, fakes: str) -> dict[str, tuple[int, int]]:
    """{"REAL"|"FAKE": (crops, videos)} that a split of `rows` trains or validates on; with
    self-blends (`fakes` blends or both) each real crop also stands for a fake, its blend."""
    reals, dataset_fakes = rows[rows["label"] == 0], rows[rows["label"] == 1]
    fake_parts = {"dataset": [dataset_fakes], "blends": [reals], "both": [dataset_fakes, reals]}[fakes]
    fake_crops = sum(len(part) for part in fake_parts)
    fake_videos = sum(part["video"].nunique() for part in fake_parts)
    return {"REAL": (len(reals), reals["video"].nunique()), "FAKE": (fake_crops, fake_videos)}


def check_split(
    parts: dict[str, tuple[pd.DataFrame, str]], fold: str, minimum: int, max_ratio: float, allow: bool = False
) -> list[str]:
    """Refuse a fold (e.g. "fold 0") where a part ({"training": (rows, fakes source), "validation":
    ...}) has fewer than `minimum` crops of a class: DegenerateSplitError, one line naming the fold
    and the counts (with `allow`, a warning instead; a class with no crop at all is refused even
    then, naming the class). Returns the warnings, also those for a class that outnumbers the other
    by more than `max_ratio`."""
    warnings = []
    for part, (rows, fakes) in parts.items():
        counts = class_counts(rows, fakes)
        described = ", ".join(f"{crops} {label} crops of {videos} videos" for label, (crops, videos) in counts.items())
        fewest = min(crops for crops, _ in counts.values())
        most = max(crops for crops, _ in counts.values())
        missing = [label for label, (crops, _) in counts.items() if crops == 0]
        if missing:  # an epoch is balanced by the rarer class: without one it holds nothing
            raise DegenerateSplitError(
                f"{fold}: the {part} split has {described}: no {' or '.join(missing)} crop at all, which "
                "nothing trains on (refused even with --allow-degenerate-split)"
            )
        if fewest < minimum:
            problem = (
                f"{fold}: the {part} split has {described}; at least {minimum} crops of each class are "
                "needed (data.min_class_crops; --allow-degenerate-split trains anyway)"
            )
            if not allow:
                raise DegenerateSplitError(problem)
            warnings.append(problem)
        elif most > max_ratio * fewest:
            warnings.append(
                f"{fold}: the {part} split is imbalanced: {described} "
                f"(more than {max_ratio:g} to 1, data.max_class_ratio)"
            )
    return warnings


def sample_epoch(
    rows: pd.DataFrame,
    epoch: int,
    seed: int,
    blendable: pd.DataFrame | None = None,
    blend_share: float = 0.0,
    frames_per_video: int | None = None,
    draw: int = 0,
) -> pd.DataFrame:
    """All real crops and as many fakes (all fakes if fewer), shuffled; fixed by (seed, epoch) and,
    for an epoch made of several draws (`repeated_draws`), the draw's number.
    With `blendable` reals, `blend_share` of the fake draws are blends of them (column `blend`).
    With `frames_per_video`, each video (and the blendable reals) first gives that many crops."""
    rng = np.random.default_rng([seed, epoch] if draw == 0 else [seed, epoch, 2, draw])
    if frames_per_video:
        rows = draw_per_video(rows, frames_per_video, rng)
        blendable = draw_per_video(blendable, frames_per_video, rng) if blendable is not None else None
    real, fake = rows[rows["label"] == 0], rows[rows["label"] == 1]
    count = min(len(fake), len(real)) if len(real) else len(fake)
    blends = round(len(real) * blend_share) if blendable is not None and len(blendable) else 0
    count = min(count, len(real) - blends)
    chosen = fake.sample(n=count, replace=False, random_state=int(rng.integers(2**31)))
    parts = [real.assign(blend=False), chosen.assign(blend=False)]
    if blends:
        drawn = blendable.sample(n=blends, replace=blends > len(blendable), random_state=int(rng.integers(2**31)))
        parts.append(drawn.assign(blend=True, label=1))
    both = pd.concat(parts)
    return both.iloc[rng.permutation(len(both))].reset_index(drop=True)


def repeated_draws(draw, length: int) -> list:
    """draw(0), draw(1), ... until their lengths add up to at least `length`: an epoch longer than
    one balanced draw of the data (draw 0 alone when it is long enough, or holds nothing)."""
    parts = [draw(0)]
    while sum(len(part) for part in parts) < length and len(parts[-1]):
        parts.append(draw(len(parts)))
    return parts


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
        fakes: str = "dataset",
        blend_share: float = 0.5,
        frames_per_video: int | None = None,
        augment_strength: float = 1.0,
    ):
        if fakes not in FAKE_SOURCES:
            raise ValueError(f"data.fakes must be one of {', '.join(FAKE_SOURCES)}, got {fakes!r}")
        if not 0.0 <= blend_share <= 1.0:
            raise ValueError(f"data.blend_share must be between 0 and 1, got {blend_share}")
        self.data_dir = Path(data_dir)
        self.train = train
        self.mean, self.std = mean, std
        self.label_smoothing = label_smoothing
        self.cutouts = cutouts
        self.transforms = train_transforms(size, augment_strength) if train else val_transforms(size)
        self.epoch_seed = 0
        self.min_samples = 0  # an epoch shorter than this draws again (training/loop/builders.py epoch_length)
        self.pairs = train and fakes == "blends"  # each item: a real crop and its blend
        self.blend_share = blend_share if train and fakes == "both" else 0.0
        self.frames_per_video = frames_per_video
        self.blendable = self._blendable(rows) if train and fakes != "dataset" else None
        self.rows = self.blendable if self.pairs else rows
        if train:
            self.samples = self.rows.assign(blend=False)
        else:
            self.samples = validation_frames(rows, val_frame_modulo).assign(blend=False)
            if fakes == "blends":  # no dataset fake in model selection either: reals and their blends
                reals = self.samples[self.samples["label"] == 0]
                blends = self._blendable(self.samples).assign(blend=True, label=1)
                self.samples = pd.concat([reals, blends]).reset_index(drop=True)

    @property
    def images_per_item(self) -> int:
        return 2 if self.pairs else 1

    def _blendable(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The real crops that have landmarks to place a blend mask with."""
        reals = rows[rows["label"] == 0]
        found = [
            (landmarks_dir(self.data_dir, original) / f"{Path(file).stem}.npy").is_file()
            for original, file in zip(reals["original"], reals["file"], strict=True)
        ]
        blendable = reals[found].reset_index(drop=True)
        logger.info("%d of %d real crops have landmarks and can be self-blended", len(blendable), len(reals))
        if blendable.empty:
            raise ValueError(
                f"{self.data_dir}: no real training crop has landmarks (landmarks/VIDEO/FRAME_FACE.npy), "
                "so none can be self-blended; run python -m preprocess.landmarks first"
            )
        return blendable

    def reset(self, epoch: int, seed: int) -> None:
        """Draw this epoch's fakes and order (training only)."""
        if not self.train:
            return
        parts = repeated_draws(lambda draw: self._draw(epoch, seed, draw), self.min_samples)
        self.samples = pd.concat(parts).reset_index(drop=True) if len(parts) > 1 else parts[0]
        self.epoch_seed = int(np.random.default_rng([seed, epoch, 1]).integers(2**31))

    def _draw(self, epoch: int, seed: int, draw: int) -> pd.DataFrame:
        if self.pairs:
            rng = np.random.default_rng([seed, epoch] if draw == 0 else [seed, epoch, 2, draw])
            rows = draw_per_video(self.rows, self.frames_per_video, rng) if self.frames_per_video else self.rows
            return rows.iloc[rng.permutation(len(rows))].reset_index(drop=True).assign(blend=False)
        return sample_epoch(self.rows, epoch, seed, self.blendable, self.blend_share, self.frames_per_video, draw)

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
        seed = (self.epoch_seed * 1_000_003 + position) % 2**32
        blend = self.pairs or row["blend"]
        made = self.blended(row, seed) if blend else [self.augmented(row, seed)]
        images = torch.stack([to_tensor(image, self.mean, self.std) for image, _ in made])
        labels = torch.tensor([[label] for _, label in made], dtype=torch.float32)
        return {  # a pair stays 2 x ...; pair_collate makes one batch of them
            "image": images if self.pairs else images[0],
            "label": labels if self.pairs else labels[0],
            "video": row["video"] if self.pairs or not blend else f"{row['video']}{BLEND_SUFFIX}",
            "file": row["file"],
            "replaced": replaced,
        }

    def read(self, row) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The RGB crop of `row`, its diff mask (zeros if none) and its original's landmarks (None
        if none; read in training and for blends only)."""
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
        landmarks_path = landmarks_dir(self.data_dir, row["original"]) / f"{stem}.npy"
        wanted = self.train or bool(row.get("blend", False))
        landmarks = np.load(landmarks_path) if wanted and landmarks_path.exists() else None
        return image, diff, landmarks

    def finish(
        self, image, diff, landmarks, label: float, seed: int, cutout_seed: int | None = None
    ) -> tuple[np.ndarray, float]:
        """In training: cut out (by `cutout_seed`, default `seed`), transform by the random state
        `seed` (the same seed, the same transform) and smooth the label."""
        if self.train:
            if self.cutouts:
                cutout_rng = cutout_random(seed if cutout_seed is None else cutout_seed)
                image, diff = apply_cutouts(image, diff, landmarks, label > 0.5, cutout_rng)
            seed_transforms(self.transforms, seed)
            label = float(np.clip(label, self.label_smoothing, 1 - self.label_smoothing))
        return self.transforms(image=image, mask=diff)["image"], label

    def augmented(self, row, seed: int, cutout_seed: int | None = None) -> tuple[np.ndarray, float]:
        """The crop of `row` as training (or validation) sees it, and its label."""
        image, diff, landmarks = self.read(row)
        return self.finish(image, diff, landmarks, float(row["label"]), seed, cutout_seed)

    def blended(self, row, seed: int) -> list[tuple[np.ndarray, float]]:
        """A self-blended fake of the real crop of `row` (after its real target in pair mode), both
        cut out and transformed alike; the blend mask stands in for the fake's diff."""
        image, _, landmarks = self.read(row)
        if landmarks is None:
            raise ValueError(f"{row['video']}/{row['file']}: no landmarks to place a blend with")
        blend = self_blend(image, landmarks, np.random.default_rng([seed, BLEND_STREAM]))
        mask = np.round(blend.mask * 255).astype(np.uint8)
        fake = self.finish(blend.fake, mask, landmarks, 1.0, seed)
        if not self.pairs:
            return [fake]
        return [self.finish(blend.real, np.zeros_like(mask), landmarks, 0.0, seed), fake]


def pair_collate(items: list[dict]) -> dict:
    """A batch of (real, blend) pairs as one batch of images: reals and their blends side by side."""
    return {
        "image": torch.cat([item["image"] for item in items]),
        "label": torch.cat([item["label"] for item in items]),
        "video": [item["video"] for item in items for _ in range(2)],
        "file": [item["file"] for item in items for _ in range(2)],
        "replaced": torch.tensor([item["replaced"] for item in items for _ in range(2)]),
    }
