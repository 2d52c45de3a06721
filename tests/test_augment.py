"""Training augmentations on albumentations 2.x (warnings are errors) and the face-part cutouts."""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
import pytest

from preprocess.faces.face_geometry import TEMPLATE, face_outline
from tests.conftest import ALBUMENTATIONS_ARGUMENT_WARNING_AS_ERROR
from training.data.augment import (
    IsotropicResize,
    apply_cutouts,
    blackout_half_face_hull,
    half_and_quarter_masks,
    isotropically_resize_image,
    keep_random_part,
    remove_eyes,
    remove_mouth,
    remove_nose,
    seed_transforms,
    train_transforms,
    val_transforms,
)

# albumentations 2.x only warns on an argument it does not know, then uses its default: an error here
pytestmark = pytest.mark.filterwarnings(ALBUMENTATIONS_ARGUMENT_WARNING_AS_ERROR)

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


def test_train_pipeline_is_the_originals_in_its_order():
    kinds = [type(t) for t in train_transforms(96).transforms]
    assert kinds == [
        A.ImageCompression,
        A.GaussNoise,
        A.GaussianBlur,
        A.HorizontalFlip,
        A.OneOf,
        A.PadIfNeeded,
        A.OneOf,
        A.ToGray,
        A.Affine,
    ]


def test_train_pipeline_uses_the_recipe_values_under_2x_names():
    pipeline = train_transforms(96)
    compression = _find(pipeline, A.ImageCompression)
    assert compression.quality_range == (60, 100) and compression.p == 0.5
    noise = _find(pipeline, A.GaussNoise)
    assert noise.p == 0.1 and np.array(noise.std_range) * 255 == pytest.approx(np.sqrt([10, 50]))
    assert _find(pipeline, A.HorizontalFlip).p == 0.5
    assert _find(pipeline, A.ToGray).p == 0.2
    pad = _find(pipeline, A.PadIfNeeded)
    assert (pad.min_height, pad.min_width, pad.border_mode, pad.fill) == (96, 96, cv2.BORDER_CONSTANT, 0)


def test_blur_is_the_originals_three_tap_kernel():
    blur = _find(train_transforms(96), A.GaussianBlur)
    assert blur.p == 0.05 and blur.blur_limit == (3, 3)
    blur.p = 1.0
    image = np.random.default_rng(2).integers(0, 255, (60, 50, 3), dtype=np.uint8)
    # The original: cv2.GaussianBlur with ksize 3 and sigma 0, OpenCV's fixed [1/4, 1/2, 1/4] kernel.
    expected = cv2.GaussianBlur(image, (3, 3), 0)
    assert np.abs(blur(image=image)["image"].astype(int) - expected).max() <= 1


def test_resize_choices_are_three_interpolation_pairs_each_applied():
    resize = next(t for t in train_transforms(96).transforms if isinstance(t, A.OneOf))
    assert resize.p == 1.0 and all(isinstance(t, IsotropicResize) for t in resize.transforms)
    pairs = [(t.interpolation_down, t.interpolation_up) for t in resize.transforms]
    assert pairs == [(cv2.INTER_AREA, cv2.INTER_CUBIC), (cv2.INTER_AREA, cv2.INTER_LINEAR), (cv2.INTER_LINEAR,) * 2]
    small = np.random.default_rng(3).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    large = np.random.default_rng(4).integers(0, 255, (180, 140, 3), dtype=np.uint8)
    for transform, (down, up) in zip(resize.transforms, pairs, strict=True):
        assert np.array_equal(transform.apply(small), cv2.resize(small, (74, 96), interpolation=up))
        assert np.array_equal(transform.apply(large), cv2.resize(large, (74, 96), interpolation=down))


def test_colour_changes_are_one_of_three_at_p_07_with_the_old_defaults():
    colour = [t for t in train_transforms(96).transforms if isinstance(t, A.OneOf)][1]
    assert colour.p == 0.7
    brightness, pca, hsv = colour.transforms
    assert isinstance(brightness, A.RandomBrightnessContrast) and isinstance(pca, A.FancyPCA)
    assert isinstance(hsv, A.HueSaturationValue)
    assert brightness.brightness_limit == (-0.2, 0.2) and brightness.contrast_limit == (-0.2, 0.2)
    assert pca.alpha == 0.1
    assert (hsv.hue_shift_limit, hsv.sat_shift_limit, hsv.val_shift_limit) == ((-20, 20), (-30, 30), (-20, 20))


def _shape_moments(image: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(side ratio, angle of the long axis in degrees, sqrt of the area, centroid) of a white shape."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    values, vectors = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(float)))
    long_axis = vectors[:, 1] * np.sign(vectors[0, 1] or 1)
    angle = np.degrees(np.arctan2(long_axis[1], long_axis[0]))
    return (
        float(np.sqrt(values[1] / values[0])),
        float(angle),
        float(np.sqrt(len(xs))),
        np.array([xs.mean(), ys.mean()]),
    )


def test_shift_scale_rotate_is_isotropic_and_within_the_recipe_limits():
    affine = _find(train_transforms(96), A.Affine)
    assert affine.p == 0.5 and affine.border_mode == cv2.BORDER_CONSTANT and affine.fill == 0
    affine.p = 1.0
    image = np.zeros((240, 240, 3), np.uint8)
    image[100:140, 80:160] = 255  # an 80 x 40 rectangle at the centre
    ratio, angle, side, centre = _shape_moments(image)
    assert ratio == pytest.approx(2.0, abs=0.01) and angle == pytest.approx(0.0, abs=0.1)
    scales = []
    for seed in range(40):
        affine.set_random_seed(seed)
        moved = _shape_moments(affine(image=image)["image"])
        # One scale factor for both axes: the sides keep their 2:1 ratio (independent factors
        # in 0.8-1.2 would give 1.33-3.0).
        assert moved[0] == pytest.approx(2.0, rel=0.04)
        assert abs(moved[1]) <= 10.5
        assert 0.79 <= moved[2] / side <= 1.21
        assert np.all(np.abs(moved[3] - centre) <= 0.1 * 240 + 1)
        scales.append(moved[2] / side)
    assert min(scales) < 0.9 and max(scales) > 1.1, "the whole scale range is drawn"


def test_flip_mirrors_the_crop_and_its_mask():
    flip = _find(train_transforms(96), A.HorizontalFlip)
    flip.p = 1.0
    image = np.random.default_rng(4).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    mask = np.random.default_rng(5).integers(0, 255, (20, 30), dtype=np.uint8)
    out = flip(image=image, mask=mask)
    assert np.array_equal(out["image"], image[:, ::-1]) and np.array_equal(out["mask"], mask[:, ::-1])


@pytest.mark.parametrize("shape", [(90, 70, 3), (40, 130, 3), (300, 300, 3)])
def test_pipelines_give_square_inputs_and_masks_without_warnings(shape):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    mask = rng.integers(0, 255, shape[:2], dtype=np.uint8)
    train = train_transforms(64)
    for seed in range(30):
        seed_transforms(train, seed)
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
    assert masks[5][:50, 30:].max() == 0 and masks[5][50:, :30].max() == 0
    assert masks[5][:50, :30].min() == 1 and masks[5][50:, 30:].min() == 1
    assert all(mask.sum() == 3000 for mask in masks)


def test_a_fake_keeps_a_part_with_more_than_20_non_zero_diff_pixels_however_faint():
    image = _crop()
    diff = np.zeros((200, 180), np.uint8)
    diff[150:, 120:] = 12  # the fake differs faintly (far below 0.4 * 255), only bottom right
    cut = 0
    for seed in range(10):
        kept_image, kept_diff = keep_random_part(image, diff, is_fake=True, rng=random.Random(seed))
        if np.array_equal(kept_image, image):
            continue  # five draws missed the masks that keep the corner: the crop stays whole
        cut += 1
        assert np.count_nonzero(kept_diff) == np.count_nonzero(diff), "the masks that qualify keep the corner"
        assert (kept_image == 0).all(-1).mean() == pytest.approx(0.5, abs=0.01)
    assert cut >= 8  # three masks of six keep the corner: each try qualifies with p 1/2

    few = np.zeros((200, 180), np.uint8)
    few[190:, 170:172] = 255  # 20 non-zero pixels: not more than 20, no mask qualifies
    for seed in range(5):
        kept_image, kept_diff = keep_random_part(image, few, is_fake=True, rng=random.Random(seed))
        assert np.array_equal(kept_image, image) and np.array_equal(kept_diff, few)
        real_image, _ = keep_random_part(image, few, is_fake=False, rng=random.Random(seed))
        assert (real_image == 0).all(-1).mean() == pytest.approx(0.5, abs=0.01), "a real takes any mask"


def test_cutout_branches_follow_the_recipe_probabilities():
    crop, diff = _crop(), np.zeros((200, 180), np.uint8)
    rng = random.Random(0)
    changed = sum(not np.array_equal(apply_cutouts(crop, diff, LANDMARKS, False, rng)[0], crop) for _ in range(400))
    # landmarks 0.7 * (7/8 something removed) + 0.3 * 0.2 hull + 0.3 * 0.8 * 0.1 quarter masks = 0.696
    assert 0.62 < changed / 400 < 0.77
    without = sum(not np.array_equal(apply_cutouts(crop, diff, None, False, rng)[0], crop) for _ in range(400))
    assert 0.03 < without / 400 < 0.14  # only the quarter masks: 0.8 * 0.1


def test_an_argument_albumentations_does_not_know_is_an_error_in_these_tests():
    """The module's warning filter catches what it is for: albumentations 2.x renamed GaussNoise's
    `var_limit` and would otherwise only warn and fall back to its default."""
    with pytest.raises(UserWarning, match="not valid for transform GaussNoise"):
        A.GaussNoise(var_limit=(10.0, 50.0))
