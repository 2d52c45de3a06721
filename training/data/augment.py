"""The recipe's augmentations on the albumentations 2.x API, and its face-part cutouts.

`train_transforms` / `val_transforms` build the albumentations pipelines (image + diff mask).
The cutouts run before them, on the raw crop where the landmarks are valid:
  - with landmarks (p 0.7): black out the eyes, or the mouth, or the nose as a thick line;
  - else (p 0.2): black out half of the face hull, placed by the 5 landmarks (no dlib);
  - else (p 0.1): keep one of six half/quarter masks of the image, preferring for a fake a mask
    that keeps some of its diff pixels.
The original computed the quarter masks' middle row from the width (`mid_h = w // 2`); here it
comes from the height.

Randomness: `seed_transforms` gives every transform (and every OneOf) its own random stream and
`cutout_random` the cutouts theirs, all derived from one sample seed, so each "apply or not" is
drawn on its own while the same seed still gives the same augmentation (every crop of a temporal
clip, a real crop and its self-blend). albumentations' `Compose.set_random_seed` would hand the
same seed to every child: their first draws would be equal and the transforms would come in
lock-step (flip, JPEG and the affine always together).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import albumentations as A
import cv2
import numpy as np
from scipy.ndimage import binary_dilation
from skimage.draw import polygon as fill_polygon

from preprocess.faces.face_geometry import face_outline
from training.data.face_input import isotropically_resize_image


class IsotropicResize(A.DualTransform):
    """Longer side to `max_side`, aspect kept; masks resized with nearest neighbour."""

    def __init__(
        self,
        max_side: int,
        interpolation_down: int = cv2.INTER_AREA,
        interpolation_up: int = cv2.INTER_CUBIC,
        p: float = 1.0,
    ):
        super().__init__(p=p)
        self.max_side = max_side
        self.interpolation_down = interpolation_down
        self.interpolation_up = interpolation_up

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        return isotropically_resize_image(img, self.max_side, self.interpolation_down, self.interpolation_up)

    def apply_to_mask(self, mask: np.ndarray, **params) -> np.ndarray:
        return isotropically_resize_image(mask, self.max_side, cv2.INTER_NEAREST, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_side", "interpolation_down", "interpolation_up")


# Old albumentations' GaussNoise default drew variance 10-50 in pixel units; 2.x takes the
# standard deviation as a fraction of 255.
NOISE_STD_RANGE = (np.sqrt(10) / 255, np.sqrt(50) / 255)
# The original's GaussianBlur(blur_limit=3) called cv2.GaussianBlur with sigma 0, for which OpenCV
# uses the fixed 3-tap kernel [1/4, 1/2, 1/4]; this sigma gives exactly that kernel
# (exp(-1 / (2 sigma^2)) = 1/2), where OpenCV's formula for sigma 0 (0.8) would not.
BLUR_SIGMA = float(np.sqrt(1 / (2 * np.log(2))))


def _resize_choices(size: int) -> A.OneOf:
    return A.OneOf(
        [
            IsotropicResize(size, cv2.INTER_AREA, cv2.INTER_CUBIC),
            IsotropicResize(size, cv2.INTER_AREA, cv2.INTER_LINEAR),
            IsotropicResize(size, cv2.INTER_LINEAR, cv2.INTER_LINEAR),
        ],
        p=1.0,
    )


def train_transforms(size: int, strength: float = 1.0) -> A.Compose:
    """The recipe's training pipeline; `strength` scales the probability of every optional
    transform but the flip (1.0: the recipe's; the CPU demo trains a few hundred steps at 0.5)."""
    if not 0.0 <= strength <= 1.0 / 0.7:
        raise ValueError(f"augmentation strength must be between 0 and {1 / 0.7:.3f} (1: the recipe), got {strength}")
    return A.Compose(
        [
            A.ImageCompression(quality_range=(60, 100), p=0.5 * strength),
            A.GaussNoise(std_range=NOISE_STD_RANGE, p=0.1 * strength),
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(BLUR_SIGMA, BLUR_SIGMA), p=0.05 * strength),
            A.HorizontalFlip(p=0.5),
            _resize_choices(size),
            A.PadIfNeeded(min_height=size, min_width=size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
            A.OneOf([A.RandomBrightnessContrast(), A.FancyPCA(), A.HueSaturationValue()], p=0.7 * strength),
            A.ToGray(p=0.2 * strength),
            A.Affine(  # the original's ShiftScaleRotate: one scale factor for both axes
                translate_percent=(-0.1, 0.1),
                scale=(0.8, 1.2),
                keep_ratio=True,
                rotate=(-10, 10),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=0.5 * strength,
            ),
        ]
    )


def val_transforms(size: int) -> A.Compose:
    return A.Compose(
        [
            IsotropicResize(size, cv2.INTER_AREA, cv2.INTER_CUBIC),
            A.PadIfNeeded(min_height=size, min_width=size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
        ]
    )


TRANSFORM_STREAM, CUTOUT_STREAM = 0, 1  # a sample seed's streams; training/data/dataset.py adds the blend's


def _transform_tree(transform) -> Iterator:
    """The pipeline, then each of its transforms, depth first (a parent before its children)."""
    yield transform
    for child in getattr(transform, "transforms", ()):
        yield from _transform_tree(child)


def seed_transforms(pipeline: A.BaseCompose, seed: int) -> None:
    """Give the pipeline and each transform in it a random stream of its own, derived from `seed`.

    A parent's `set_random_state` hands its generators to its children, so parents are seeded
    first and their children after, each with its own."""
    nodes = list(_transform_tree(pipeline))
    for node, stream in zip(nodes, np.random.SeedSequence([seed, TRANSFORM_STREAM]).spawn(len(nodes)), strict=True):
        numpy_stream, python_stream = stream.spawn(2)
        node.set_random_state(np.random.default_rng(numpy_stream), _python_random(python_stream))


def _python_random(stream: np.random.SeedSequence) -> random.Random:
    return random.Random(int.from_bytes(stream.generate_state(4).tobytes(), "little"))


def cutout_random(seed: int) -> random.Random:
    """The cutouts' random stream of a sample seed, apart from every transform's."""
    return _python_random(np.random.SeedSequence([seed, CUTOUT_STREAM]))


def _blackout_line(image: np.ndarray, start, end, dilation: int) -> np.ndarray:
    """Black out a 2 px line from `start` to `end`, dilated `dilation` times (a diamond-ended bar)."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), color=1, thickness=2)
    region = binary_dilation(mask, iterations=dilation) if dilation > 0 else mask.astype(bool)
    out = image.copy()
    out[region] = 0
    return out


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(np.asarray(b, float) - np.asarray(a, float))))


def remove_eyes(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    left_eye, right_eye = np.round(landmarks[:2])
    return _blackout_line(image, left_eye, right_eye, int(_distance(left_eye, right_eye) // 4))


def remove_mouth(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    mouth_left, mouth_right = np.round(landmarks[3:5])
    return _blackout_line(image, mouth_left, mouth_right, int(_distance(mouth_left, mouth_right) // 3))


def remove_nose(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """A bar from the nose tip up to between the eyes, as thick as the eyes' bar."""
    left_eye, right_eye, nose = np.round(landmarks[:3])
    between_eyes = np.floor((left_eye + right_eye) / 2)
    return _blackout_line(image, nose, between_eyes, int(_distance(left_eye, right_eye) // 4))


def remove_landmark(image: np.ndarray, landmarks: np.ndarray, rng: random.Random) -> np.ndarray:
    """Eyes (1/2), else mouth (1/4), else nose (1/8), else nothing, as the recipe draws them."""
    if rng.random() > 0.5:
        return remove_eyes(image, landmarks)
    if rng.random() > 0.5:
        return remove_mouth(image, landmarks)
    if rng.random() > 0.5:
        return remove_nose(image, landmarks)
    return image


def blackout_half_face_hull(image: np.ndarray, landmarks: np.ndarray, rng: random.Random) -> np.ndarray:
    """Black out the top, bottom, left or right half of the face hull (split at its centroid)."""
    outline = face_outline(landmarks)
    rows, cols = fill_polygon(outline[:, 1], outline[:, 0], shape=image.shape[:2])
    hull = np.zeros(image.shape[:2], bool)
    hull[rows, cols] = True
    if not hull.any():
        return image
    center_y, center_x = int(rows.mean()), int(cols.mean())
    first = rng.random() > 0.5
    if rng.random() > 0.5:
        if first:
            hull[:center_y] = False
        else:
            hull[center_y:] = False
    elif first:
        hull[:, :center_x] = False
    else:
        hull[:, center_x:] = False
    out = image.copy()
    out[hull] = 0
    return out


def half_and_quarter_masks(shape: tuple[int, int]) -> list[np.ndarray]:
    """Six keep-masks (1 = kept): without the top, bottom, left or right half, and without the
    top-left and bottom-right, or top-right and bottom-left, quarters."""
    height, width = shape
    mid_h, mid_w = height // 2, width // 2

    def keep_without(*regions) -> np.ndarray:
        keep = np.ones(shape, np.uint8)
        for region in regions:
            keep[region] = 0
        return keep

    return [
        keep_without(np.s_[:mid_h, :]),
        keep_without(np.s_[mid_h:, :]),
        keep_without(np.s_[:, :mid_w]),
        keep_without(np.s_[:, mid_w:]),
        keep_without(np.s_[:mid_h, :mid_w], np.s_[mid_h:, mid_w:]),
        keep_without(np.s_[:mid_h, mid_w:], np.s_[mid_h:, :mid_w]),
    ]


def keep_random_part(
    image: np.ndarray, diff: np.ndarray, is_fake: bool, rng: random.Random, tries: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Keep one of the six half/quarter masks; for a fake, one that keeps more than 20 pixels where
    the diff is non-zero (the original's test; its 0.4 * 255 threshold only shaped the masks)."""
    masks = half_and_quarter_masks(image.shape[:2])
    for _ in range(tries):
        keep = rng.choice(masks)
        if not is_fake or np.count_nonzero(diff * keep) > 20:
            return image * keep[..., None], diff * keep
    return image, diff


def apply_cutouts(
    image: np.ndarray, diff: np.ndarray, landmarks: np.ndarray | None, is_fake: bool, rng: random.Random
) -> tuple[np.ndarray, np.ndarray]:
    """The recipe's cutout branch for one training crop; returns the new image and diff mask."""
    if landmarks is not None and rng.random() < 0.7:
        return remove_landmark(image, landmarks, rng), diff
    if rng.random() < 0.2:
        if landmarks is None:  # the original needed a dlib face here and skipped when it found none
            return image, diff
        return blackout_half_face_hull(image, landmarks, rng), diff
    if rng.random() < 0.1:
        return keep_random_part(image, diff, is_fake, rng)
    return image, diff
