"""Self-blended fakes: changed pixels, deformed masks, determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from preprocess.face_geometry import TEMPLATE, face_outline
from training.blends import BLEND_RATIOS, face_blend_mask, hull_mask, self_blend


def face_image(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and the 5 landmarks of a face that fills its middle."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 215, (size, size, 3)).astype(np.uint8)
    landmarks = TEMPLATE * size * 0.8 + size * 0.1
    return image, landmarks


@pytest.mark.parametrize("seed", range(8))
def test_a_blend_changes_pixels_only_where_its_mask_is_set(seed):
    image, landmarks = face_image()
    blend = self_blend(image, landmarks, np.random.default_rng(seed))
    changed = np.any(blend.fake != blend.real, axis=2)
    assert changed.any()
    assert not changed[blend.mask <= 0].any()
    assert blend.mask.min() >= 0 and blend.mask.max() <= 1
    assert min(abs(blend.mask.max() - ratio) for ratio in BLEND_RATIOS) < 1e-6
    outside = blend.mask <= 0
    assert outside.mean() > 0.2  # the background is never blended
    # the target is the crop itself or the crop altered as a whole
    assert blend.real.shape == image.shape and blend.fake.dtype == np.uint8


def test_either_the_source_or_the_target_is_altered():
    image, landmarks = face_image()
    blends = [self_blend(image, landmarks, np.random.default_rng(seed)) for seed in range(20)]
    targets_kept = [np.array_equal(blend.real, image) for blend in blends]
    assert 3 < sum(targets_kept) < 17


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("seed", range(6))
def test_the_mask_is_deformed_not_the_plain_template(seed):
    image, landmarks = face_image()
    template = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(template, [np.round(face_outline(landmarks)).astype(np.int32)], 1)
    hull = hull_mask(landmarks, image.shape[:2], np.random.default_rng(seed)) > 0  # the same first draws
    mask = face_blend_mask(landmarks, image.shape[:2], np.random.default_rng(seed))
    assert 0.5 < iou(hull, template > 0) < 0.96  # resized and jittered, still on the face
    # elastically deformed: blurring alone keeps an IoU above 0.98 with the hull
    assert 0.6 < iou(mask > 0.5, hull) < 0.96
    assert ((mask > 0.05) & (mask < 0.95)).sum() > 50  # a soft edge


def test_the_same_seed_gives_the_same_blend():
    image, landmarks = face_image(seed=3)
    first, again = (self_blend(image, landmarks, np.random.default_rng(42)) for _ in range(2))
    other = self_blend(image, landmarks, np.random.default_rng(43))
    assert np.array_equal(first.fake, again.fake) and np.array_equal(first.mask, again.mask)
    assert not np.array_equal(first.fake, other.fake)
