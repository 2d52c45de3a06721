"""Fake-making on arrays: alignment, masks, and changes confined to the face."""

from __future__ import annotations

import numpy as np
import pytest

from preprocess.demo_world.fakes import (
    SwapStyle,
    canonical_face,
    face_mask,
    face_roi,
    self_blend,
    swap_face,
    transfer_color,
)
from preprocess.faces.face_geometry import TEMPLATE, similarity_transform

STYLE = SwapStyle(
    canonical_size=64,
    feather=0.06,
    axes_scale=1.0,
    color_strength=1.0,
    jitter=0.01,
    gain=(1.08, 0.95, 1.02),
    offset=6.0,
    warp_scale=1.03,
    warp_shift=(0.02, -0.01),
    blur_sigma=0.8,
)


def _landmarks(center=(120.0, 100.0), size=80.0, angle=0.2) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return ((TEMPLATE - 0.5) * size) @ rotation.T + np.array(center)


def _textured_frame(seed=0, shape=(200, 240)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(30, 220, (*shape, 3)).astype(np.uint8)


def test_similarity_transform_recovers_a_known_transform():
    points = np.random.default_rng(1).uniform(0, 100, (5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.0, -7.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T + shift
    matrix = similarity_transform(points, moved)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_face_mask_covers_the_face_and_nothing_far_from_it():
    landmarks = _landmarks()
    mask = face_mask(landmarks, (200, 240), feather=0.05)
    nose = landmarks[2].round().astype(int)
    assert mask[nose[1], nose[0]] > 0.99
    assert mask.max() <= 1.0 + 1e-6 and mask.min() >= 0.0
    x1, y1, x2, y2 = face_roi(landmarks, (200, 240))
    outside = np.ones_like(mask, bool)
    outside[y1:y2, x1:x2] = False
    assert mask[outside].max() < 1e-3


@pytest.mark.parametrize("make_fake", ["swap", "self_blend"])
def test_fakes_change_the_face_and_only_the_face_region(make_fake):
    frame = _textured_frame()
    landmarks = _landmarks()
    if make_fake == "swap":
        source = canonical_face(_textured_frame(seed=5, shape=(300, 300)), _landmarks((150, 150), 120, 0.0), 64)
        fake = swap_face(frame, landmarks, source, STYLE)
    else:
        fake = self_blend(frame, landmarks, STYLE)
    changed = np.abs(fake.astype(int) - frame).max(axis=2) > 0
    x1, y1, x2, y2 = face_roi(landmarks, frame.shape)
    inside = np.zeros(changed.shape, bool)
    inside[y1:y2, x1:x2] = True
    assert not changed[~inside].any()
    nose = landmarks[2].round().astype(int)
    window = (slice(nose[1] - 5, nose[1] + 5), slice(nose[0] - 5, nose[0] + 5))
    assert changed[window].mean() > 0.9


def test_transfer_color_matches_the_target_statistics_inside_the_mask():
    rng = np.random.default_rng(3)
    source = np.clip(rng.normal(60, 10, (40, 40, 3)), 0, 255)
    target = np.clip(rng.normal(180, 25, (40, 40, 3)), 0, 255)
    mask = np.ones((40, 40), np.float32)
    matched = transfer_color(source, target, mask)
    assert abs(matched.mean() - target.mean()) < 5
    untouched = transfer_color(source, target, mask, strength=0.0)
    np.testing.assert_allclose(untouched, source, atol=1.0)  # Lab round trip in float32


def test_canonical_face_puts_the_landmarks_on_the_template():
    image = np.zeros((300, 300, 3), np.uint8)
    landmarks = _landmarks((150, 140), 120, 0.3)
    for x, y in landmarks.round().astype(int):
        image[y - 2 : y + 3, x - 2 : x + 3] = 255
    face = canonical_face(image, landmarks, 112)
    for x, y in (TEMPLATE * 112).round().astype(int):
        assert face[y - 1 : y + 2, x - 1 : x + 2].max() > 100
