"""Training augmentations on albumentations 2.x (warnings are errors) and the face-part cutouts."""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
import pytest

from preprocess.face_geometry import TEMPLATE, face_outline
from training.augment import (
    NOISE_STD_RANGE,
    apply_cutouts,
    blackout_half_face_hull,
    half_and_quarter_masks,
    isotropically_resize_image,
    keep_random_part,
    remove_eyes,
    remove_mouth,
    remove_nose,
    train_transforms,
    val_transforms,
)

pytestmark = pytest.mark.filterwarnings("error")

LANDMARKS = TEMPLATE * 160 + np.array([20.0, 10.0])  # a face filling a 200 x 180 crop
CROP_SHAPE = (200, 180, 3)


def _crop() -> np.ndarray:
    return np.full(CROP_SHAPE, 200, np.uint8)


def _find(transform, kind):
    for t in transform.transforms:
        if isinstance(t, kind):
            return t
        if isinstance(t, A.OneOf):
            found = _find(t, kind)
            if found is not None:
                return found
    return None


def test_train_pipeline_uses_the_recipe_values_under_2x_names():
    pipeline = train_transforms(96)
    assert _find(pipeline, A.ImageCompression).quality_range == (60, 100)
    assert _find(pipeline, A.ImageCompression).p == 0.5
    noise = _find(pipeline, A.GaussNoise)
    assert noise.std_range == pytest.approx(NOISE_STD_RANGE) and noise.p == 0.1
    assert np.sqrt(10) == pytest.approx(noise.std_range[0] * 255) and np.sqrt(50) == pytest.approx(
        noise.std_range[1] * 255
    )
    assert _find(pipeline, A.GaussianBlur).p == 0.05
    assert _find(pipeline, A.ToGray).p == 0.2
    affine = _find(pipeline, A.Affine)
    assert affine.p == 0.5 and affine.border_mode == cv2.BORDER_CONSTANT
    pad = _find(pipeline, A.PadIfNeeded)
    assert (pad.min_height, pad.min_width, pad.border_mode) == (96, 96, cv2.BORDER_CONSTANT)


@pytest.mark.parametrize("shape", [(90, 70, 3), (40, 130, 3), (300, 300, 3)])
def test_pipelines_give_square_inputs_and_masks_without_warnings(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    mask = rng.integers(0, 255, shape[:2], dtype=np.uint8)
    train = train_transforms(64)
    train.set_random_seed(3)
    for _ in range(30):
        out = train(image=image, mask=mask)
        assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)
    out = val_transforms(64)(image=image, mask=mask)
    assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)


def test_validation_resizes_the_longer_side_and_centres_on_black():
    image = np.full((50, 100, 3), 255, np.uint8)
    out = val_transforms(80)(image=image)["image"]
    assert out.shape == (80, 80, 3)
    rows = np.where(out[:, 40, 0] > 0)[0]
    assert (rows.min(), rows.max()) == (20, 59), "40 rows of image centred with 20 black rows above and below"


def test_isotropic_resize_keeps_aspect_and_picks_interpolation():
    image = np.random.default_rng(1).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    assert isotropically_resize_image(image, 64).shape == (64, 49, 3)
    assert isotropically_resize_image(image, 180).shape == (180, 140, 3)
    assert isotropically_resize_image(image, 90) is image
    down = isotropically_resize_image(image, 45, cv2.INTER_AREA, cv2.INTER_CUBIC)
    assert np.array_equal(down, cv2.resize(image, (35, 45), interpolation=cv2.INTER_AREA))
    up = isotropically_resize_image(image, 180, cv2.INTER_AREA, cv2.INTER_CUBIC)
    assert np.array_equal(up, cv2.resize(image, (140, 180), interpolation=cv2.INTER_CUBIC))


def _blacked(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return (before > 0).any(-1) & (after == 0).all(-1)


def _at(mask: np.ndarray, point) -> bool:
    x, y = np.round(point).astype(int)
    return bool(mask[y, x])


def test_eye_mouth_and_nose_cutouts_change_only_their_part():
    crop = _crop()
    eyes = _blacked(crop, remove_eyes(crop, LANDMARKS))
    mouth = _blacked(crop, remove_mouth(crop, LANDMARKS))
    nose = _blacked(crop, remove_nose(crop, LANDMARKS))
    left_eye, right_eye, tip, mouth_left, mouth_right = LANDMARKS
    assert _at(eyes, left_eye) and _at(eyes, right_eye) and not _at(eyes, tip) and not _at(eyes, mouth_left)
    assert _at(mouth, mouth_left) and _at(mouth, mouth_right) and not _at(mouth, left_eye) and not _at(mouth, tip)
    assert _at(nose, tip) and _at(nose, (left_eye + right_eye) / 2)
    assert not _at(nose, left_eye) and not _at(nose, mouth_left)
    for removed in (eyes, mouth, nose):
        assert 0.01 < removed.mean() < 0.15


def test_half_hull_cutout_stays_inside_the_face_and_takes_about_half():
    crop = _crop()
    hull = np.zeros(CROP_SHAPE[:2], np.uint8)
    cv2.fillPoly(hull, [np.round(face_outline(LANDMARKS)).astype(np.int32)], 1)
    for seed in range(8):
        removed = _blacked(crop, blackout_half_face_hull(crop, LANDMARKS, random.Random(seed)))
        assert removed.any()
        assert (removed & (hull == 0)).sum() <= 0.02 * removed.sum()
        assert 0.3 < removed.sum() / hull.sum() < 0.7


def test_quarter_masks_split_rows_by_height_not_width():
    masks = half_and_quarter_masks((100, 60))
    assert len(masks) == 6
    assert masks[0][:50].max() == 0 and masks[0][50:].min() == 1
    assert masks[1][50:].max() == 0 and masks[1][:50].min() == 1
    assert masks[2][:, :30].max() == 0 and masks[3][:, 30:].max() == 0
    assert masks[4][:50, :30].max() == 0 and masks[4][50:, 30:].max() == 0 and masks[4][:50, 30:].min() == 1
    assert masks[5][:50, 30:].max() == 0 and masks[5][50:, :30].max() == 0 and masks[5][50:, :30].max() == 0
    assert all(mask.sum() == 3000 for mask in masks)


def test_kept_part_of_a_fake_holds_its_diff_pixels():
    image = _crop()
    diff = np.zeros((200, 180), np.uint8)
    diff[150:, 120:] = 255  # the fake differs only in the bottom-right corner
    for seed in range(10):
        kept_image, kept_diff = keep_random_part(image, diff, is_fake=True, rng=random.Random(seed))
        if kept_diff.max() == 0:
            assert np.array_equal(kept_image, image), "no mask kept the diff: the crop is left whole"
        else:
            assert (kept_diff > 0).sum() > 20 and (kept_image == 0).all(-1).mean() == pytest.approx(0.5, abs=0.01)


def test_cutout_branches_follow_the_recipe_probabilities():
    crop, diff = _crop(), np.zeros((200, 180), np.uint8)
    rng = random.Random(0)
    changed = sum(not np.array_equal(apply_cutouts(crop, diff, LANDMARKS, False, rng)[0], crop) for _ in range(400))
    # landmarks 0.7 * (7/8 something removed) + 0.3 * 0.2 hull + 0.3 * 0.8 * 0.1 quarter masks = 0.696
    assert 0.62 < changed / 400 < 0.77
    without = sum(not np.array_equal(apply_cutouts(crop, diff, None, False, rng)[0], crop) for _ in range(400))
    assert 0.03 < without / 400 < 0.14  # only the quarter masks: 0.8 * 0.1
