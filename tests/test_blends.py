"""Self-blended fakes: changed pixels, determinism, and the reference's numbers (mapooon/SelfBlendedImages:
src/utils/sbi.py, blend.py, funcs.py; Face-Xray's random_get_hull), checked over many seeds."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest

from preprocess.faces.face_geometry import TEMPLATE
from training.data import blends
from training.data.blends import (
    BLEND_RATIOS,
    FaceExtent,
    elastic_deform,
    hull_mask,
    misalign,
    misalignment,
    self_blend,
    soften_edge,
    source_target_augment,
)


def face_image(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and the 5 landmarks of a face that fills its middle."""
    rng = np.random.default_rng(seed)
    image = rng.integers(40, 215, (size, size, 3)).astype(np.uint8)
    landmarks = TEMPLATE * size * 0.8 + size * 0.1
    return image, landmarks


def disk(size: int = 128, radius: int = 40) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), radius, 1, -1)
    return mask


def grey_noise(size: int = 64) -> np.ndarray:
    """Grey (R = G = B) noise: only an RGB shift can make its channels differ."""
    levels = np.random.default_rng(0).integers(60, 190, (size, size, 1))
    return np.repeat(levels, 3, axis=2).astype(np.uint8)


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
    blends_made = [self_blend(image, landmarks, np.random.default_rng(seed)) for seed in range(20)]
    targets_kept = [np.array_equal(blend.real, image) for blend in blends_made]
    assert 3 < sum(targets_kept) < 17


def test_the_same_seed_gives_the_same_blend():
    image, landmarks = face_image(seed=3)
    first, again = (self_blend(image, landmarks, np.random.default_rng(42)) for _ in range(2))
    other = self_blend(image, landmarks, np.random.default_rng(43))
    assert np.array_equal(first.fake, again.fake) and np.array_equal(first.mask, again.mask)
    assert not np.array_equal(first.fake, other.fake)


def test_hull_kinds_come_as_often_as_the_references_four_kinds_and_two_landmark_sets_give_them():
    """Brows to chin 9/16, brows raised half-way to the forehead 4/16, the forehead 3/16: told
    apart by the hull's top row against the template's brow line (y 0.24)."""
    size, template_size = 128, 128 * 0.8
    image, landmarks = face_image(size)
    brow_top = 0.24 * template_size + size * 0.1
    tops = np.array(
        [np.flatnonzero(hull_mask(landmarks, image.shape[:2], np.random.default_rng(s)).any(1))[0] for s in range(800)]
    )
    rise = (brow_top - tops) / template_size  # template units above the brows
    shares = [(rise < 0.045).mean(), ((rise >= 0.045) & (rise < 0.17)).mean(), (rise >= 0.17).mean()]
    assert shares == pytest.approx([9 / 16, 4 / 16, 3 / 16], abs=0.05)
    assert np.median(rise[rise >= 0.17]) == pytest.approx(0.24, abs=0.03)  # up to y 0.0, near the hairline


def boundary_displacement(before: np.ndarray, after: np.ndarray) -> float:
    """How far (px) the farthest pixel that left or joined the mask lies from its old boundary."""
    before, after = (before > 0.5).astype(np.uint8), (after > 0.5).astype(np.uint8)
    lost = cv2.distanceTransform(before, cv2.DIST_L2, 5)[(before > 0) & (after == 0)]
    gained = cv2.distanceTransform(1 - before, cv2.DIST_L2, 5)[(before == 0) & (after > 0)]
    moved = np.concatenate([lost, gained])
    return float(moved.max()) if moved.size else 0.0


def test_the_elastic_deformation_moves_the_mask_a_few_pixels_like_the_references():
    """The reference's field (uniform noise, Gaussian sigma 7, times 50) is ~1.2 px rms a component
    and 5-7.5 px at its largest over a 224-400 px crop: the boundary moves a few pixels, not 8% of
    the crop (10 px at 128). Drawn for a face twice the reference's, it moves twice as far."""
    moved = [boundary_displacement(disk(), elastic_deform(disk(), np.random.default_rng(s))) for s in range(200)]
    assert max(moved) <= 7.5
    assert 1.5 <= np.mean(moved) <= 4.5
    assert np.mean(np.array(moved) > 0) > 0.95
    doubled = [boundary_displacement(disk(), elastic_deform(disk(), np.random.default_rng(s), 2.0)) for s in range(100)]
    assert np.mean(doubled) == pytest.approx(2 * np.mean(moved[:100]), rel=0.3)


def test_the_soft_edge_lies_inside_the_hull():
    """The reference erodes (a 5-25 px square at 192-256 px a crop) before it blurs (5-25 px): the
    mask reaches at most (25 - 5) / 2 working pixels (about 7 px of 128) past the hull, is low on
    the hull's boundary, and full only inside it."""
    hull = disk()
    ring = hull - cv2.erode(hull, np.ones((3, 3), np.uint8))
    outside = cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5)
    inside = cv2.distanceTransform(hull, cv2.DIST_L2, 5)
    on_boundary = []
    for seed in range(300):
        mask = soften_edge(hull, np.random.default_rng(seed))
        assert not (mask[outside > 9] > 0).any()
        assert inside[mask >= 0.99].min() >= 2
        on_boundary.append(mask[ring > 0].mean())
    assert np.mean(on_boundary) < 0.2  # a blur of the hull itself puts its boundary at 0.5


def test_the_mask_moves_with_the_source():
    """One affine moves the source and its mask (sbi.py's randaffine warps both)."""
    image, landmarks = face_image()
    face = FaceExtent.of(landmarks)
    hull = disk()
    marked = np.repeat(hull[..., None] * 200, 3, axis=2).astype(np.uint8)  # the hull painted on the source
    stayed = 0
    for seed in range(50):
        moved, moved_mask = misalign(marked, hull, face, np.random.default_rng(seed))
        painted = moved[..., 0] > 100
        assert (painted & (moved_mask > 0)).sum() / (painted | (moved_mask > 0)).sum() > 0.97
        stayed += np.array_equal(moved_mask, hull)
    assert stayed <= 2


def test_the_misalignment_has_the_references_ranges():
    """Scale 0.95-1/0.95 drawn per axis; shifts up to 3% of the reference crop's width and 1.5% of its
    height; both about the reference crop's centre."""
    _, landmarks = face_image()
    face = FaceExtent.of(landmarks)
    crop_width, crop_height = face.reference_crop
    centre = np.array(face.reference_centre)
    matrices = np.array([misalignment(face, np.random.default_rng(seed)) for seed in range(2000)])
    scales = matrices[:, [0, 1], [0, 1]]
    assert matrices[:, [0, 1], [1, 0]].max() == 0  # no rotation or shear
    assert scales.min() >= 0.95 and scales.max() <= 1 / 0.95 + 1e-9
    assert scales.min() < 0.952 and scales.max() > 1.05
    assert abs(np.corrcoef(scales.T)[0, 1]) < 0.1  # across and down drawn apart
    shifts = matrices[:, :, :2] @ centre + matrices[:, :, 2] - centre  # where the centre goes
    assert np.abs(shifts[:, 0]).max() == pytest.approx(0.03 * crop_width, rel=0.02)
    assert np.abs(shifts[:, 1]).max() == pytest.approx(0.015 * crop_height, rel=0.02)


def laplacian_energy(image: np.ndarray) -> float:
    return float(cv2.Laplacian(image[..., 0].astype(np.float32), cv2.CV_32F).var())


def test_every_augmented_image_changes_resolution():
    """Always one of a down-up scaling or a sharpening (p 0.5 each): no augmented image keeps the
    fine detail it had, so every blend has a resolution mismatch."""
    image = grey_noise()
    ratios = np.array(
        [laplacian_energy(source_target_augment(image, np.random.default_rng(s))) for s in range(600)]
    ) / laplacian_energy(image)
    downscaled, sharpened = (ratios < 0.5).mean(), (ratios > 2).mean()
    assert downscaled + sharpened == 1.0
    assert downscaled == pytest.approx(0.5, abs=0.07)


def test_an_rgb_shift_comes_in_three_augmentations_in_ten():
    """The reference's RGBShift has p 0.3; its HSV and brightness-contrast changes keep grey grey."""
    image = grey_noise()
    coloured = [
        not (np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2]))
        for out in (source_target_augment(image, np.random.default_rng(s)) for s in range(1000))
    ]
    assert np.mean(coloured) == pytest.approx(0.3, abs=0.05)


def test_the_downscaling_is_by_2_or_4_with_nearest_interpolation(monkeypatch):
    """funcs.py's RandomDownScale: down by 2 or 4 with INTER_NEAREST, up with INTER_LINEAR. A third
    positional argument of cv2.resize is its output array, not the interpolation."""
    resize = cv2.resize
    calls = []

    def recording_resize(image, size, *args, **kwargs):
        calls.append((image.shape[1::-1], tuple(size), args, kwargs.get("interpolation")))
        return resize(image, size, *args, **kwargs)

    monkeypatch.setattr(blends.cv2, "resize", recording_resize)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3)).astype(np.uint8)
    for seed in range(60):
        source_target_augment(image, np.random.default_rng(seed))
    downs = [call for call in calls if call[1][0] < call[0][0]]
    ups = [call for call in calls if call[1][0] > call[0][0]]
    assert downs and len(downs) == len(ups)
    assert all(not args for _, _, args, _ in calls)
    assert {interpolation for *_, interpolation in downs} == {cv2.INTER_NEAREST}
    assert {interpolation for *_, interpolation in ups} == {cv2.INTER_LINEAR}
    assert {size for _, size, _, _ in downs} == {(32, 24), (16, 12)}


def test_a_tiny_face_blends_in_bounded_memory_and_collapsed_landmarks_are_refused():
    """The elastic field and the soft edge are drawn at the reference's pixels, finer than ours for
    a small face; unbounded, a 12 px face took 350 MB and collapsed points 23 GB."""
    crop = np.full((380, 380, 3), 120, np.uint8)
    tiny = 190 + (TEMPLATE - 0.5) * 15  # a face about 12 px across
    tracemalloc.start()
    try:
        blend = self_blend(crop, tiny, np.random.default_rng(0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert blend.mask.shape == (380, 380) and peak < 120 * 2**20
    for collapsed in (np.full((5, 2), 190.0), 190 + (TEMPLATE - 0.5) * 5):
        with pytest.raises(ValueError, match="too small a face to self-blend"):
            self_blend(crop, collapsed, np.random.default_rng(0))
    with pytest.raises(ValueError, match="5 finite"):
        self_blend(crop, np.full((5, 2), np.nan), np.random.default_rng(0))
