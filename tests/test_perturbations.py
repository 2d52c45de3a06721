"""Each distortion's level 1 and level 5 against its definition (DeeperForensics-1.0's parameters).

Expected values are written out by hand from the reference (perturbation/add_distortion_to_video.py
get_distortion_parameter, perturbation/distortions.py), not read back from the module's tables.
"""

import re

import cv2
import numpy as np
import pytest

from inference.distortions import perturbations as P


def textured_frame(seed=0, size=64):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def smooth_clip(count=6, size=64):
    """A moving gradient with mild noise: compressible, so CRF and quality change the result."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    noise = np.random.default_rng(1).normal(0, 6, (count, size, size, 3))
    frames = []
    for t in range(count):
        base = np.stack([xs * 3 + t * 4, ys * 3, (xs + ys) * 1.5 + 40], axis=2)
        frames.append(np.clip(base + noise[t], 0, 255).astype(np.uint8))
    return frames


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def luma(rgb):
    r, g, b = (float(v) for v in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


# ---- CS ----


@pytest.mark.parametrize("level,factor", [(1, 0.4), (5, 0.0)])
def test_saturation_scales_chroma_around_true_luma(level, factor):
    pixels = np.array([[[200, 50, 100], [30, 220, 90], [250, 240, 10]]], dtype=np.uint8)
    out = P.color_saturation(pixels, level)
    for rgb, got in zip(pixels[0], out[0], strict=True):
        y = luma(rgb)  # RGB weights: a BGR/RGB mix-up moves y by tens of levels
        expected = np.floor(y + factor * (rgb.astype(float) - y))
        assert np.all(np.abs(got.astype(float) - expected) <= 1), (rgb, got, expected)
    if level == 5:
        assert np.all(out[0].max(axis=1) - out[0].min(axis=1) <= 1)  # grey


# ---- CC ----


@pytest.mark.parametrize("level,expected", [(1, [216, 85, 5]), (5, [89, 35, 2])])
def test_contrast_multiplies_and_truncates(level, expected):
    # 255*.85=216.75, 101*.85=85.85, 7*.85=5.95; 255*.35=89.25, 101*.35=35.35, 7*.35=2.45
    frame = np.array([[[255, 101, 7]]], dtype=np.uint8)
    assert P.color_contrast(frame, level)[0, 0].tolist() == expected


# ---- BW ----


def expected_covered_pixels(height, width, count, block=8):
    """Exact expectation of the union of `count` uniform 8x8 blocks with starts 0..side-9."""

    def cover_probability(side):
        starts = side - block
        pos = np.arange(side)
        lo, hi = np.maximum(pos - block + 1, 0), np.minimum(pos, starts - 1)
        return np.maximum(hi - lo + 1, 0) / starts

    p = np.outer(cover_probability(height), cover_probability(width))
    return float(np.sum(1 - (1 - p) ** count))


@pytest.mark.parametrize("level,per_256", [(1, 16), (5, 80)])
def test_block_wise_count_size_and_coverage(level, per_256):
    assert P.block_count(1080, 1920, level) == 4 * per_256  # reference: min(h, w) // 256 * param
    assert P.block_count(512, 700, level) == 2 * per_256
    assert P.block_count(64, 64, level) == per_256  # our floor of one 256 below 256 px

    frame = np.zeros((64, 80, 3), dtype=np.uint8)
    covered = []
    for seed in range(40):
        positions = P.block_positions(64, 80, level, np.random.default_rng(seed))
        assert len(positions) == per_256
        assert positions[:, 0].min() >= 0 and positions[:, 0].max() <= 64 - 9
        assert positions[:, 1].max() <= 80 - 9
        out = P.block_wise(frame, level, np.random.default_rng(seed))
        mask = np.all(out == 128, axis=2)
        assert np.all(out[~mask] == 0)
        assert mask.sum() <= per_256 * 64
        covered.append(mask.sum())
    expected = expected_covered_pixels(64, 80, per_256)
    assert abs(np.mean(covered) - expected) < 0.03 * expected, (np.mean(covered), expected)


def test_block_wise_seeded():
    frame = textured_frame()
    a = P.block_wise(frame, 3, np.random.default_rng(7))
    assert np.array_equal(a, P.block_wise(frame, 3, np.random.default_rng(7)))
    assert not np.array_equal(a, P.block_wise(frame, 3, np.random.default_rng(8)))
    assert np.array_equal(frame, textured_frame())  # input untouched (the reference mutates it)


# ---- GNC ----


@pytest.mark.parametrize("level,variance", [(1, 0.001), (5, 0.05)])
def test_noise_variance_in_reference_ycbcr(level, variance):
    grey = np.full((64, 64, 3), 128, dtype=np.uint8)
    clean, noisy = P.noisy_normalised_ycbcr(grey, level, np.random.default_rng(3))
    for channel in range(3):
        measured = np.var(noisy[:, :, channel] - clean[:, :, channel])
        assert abs(measured / variance - 1) < 0.05, (channel, measured)


def test_noise_level1_rgb_variance_on_mid_grey():
    # Y noise std = 255^2 sqrt(v) / 219, chroma 255^2 sqrt(v) / 224 (reference's ycbcr2bgr scaling);
    # OpenCV YCrCb->RGB: R = Y + 1.403 Cr, G = Y - .714 Cr - .344 Cb, B = Y + 1.773 Cb.
    v = 0.001
    sy, sc = 255**2 * np.sqrt(v) / 219, 255**2 * np.sqrt(v) / 224
    expected = [sy**2 + (1.403 * sc) ** 2, sy**2 + (0.714**2 + 0.344**2) * sc**2, sy**2 + (1.773 * sc) ** 2]
    grey = np.full((96, 96, 3), 128, dtype=np.uint8)
    out = P.gaussian_noise_color(grey, 1, np.random.default_rng(4)).astype(float)
    for channel in range(3):
        measured = out[:, :, channel].var() - 1 / 12  # minus truncation's quantisation
        assert abs(measured / expected[channel] - 1) < 0.06, (channel, measured, expected[channel])
    assert abs(out.mean() - 127.5) < 1.0


# ---- GB ----


@pytest.mark.parametrize("level,kernel", [(1, 7), (5, 21)])
def test_blur_is_opencv_gaussian_with_reference_kernel(level, kernel):
    frame = textured_frame()
    expected = cv2.GaussianBlur(frame, (kernel, kernel), kernel / 6)
    assert np.array_equal(P.gaussian_blur(frame, level), expected)


# ---- JPEG ----


def first_quantisation_value(jpeg: bytes) -> int:
    marker = jpeg.find(b"\xff\xdb")
    return jpeg[marker + 5]  # FF DB, length (2), Pq/Tq, then the DC entry of the luma table


@pytest.mark.parametrize("level,quality,dc_step", [(1, 25, 32), (5, 7, 114)])
def test_jpeg_quality_is_in_the_bytes(level, quality, dc_step):
    # libjpeg: scale = 5000 / q below 50; DC base 16 -> (16 * scale + 50) // 100
    frame = textured_frame()
    data = P.encode_jpeg(frame, quality)
    assert first_quantisation_value(data) == dc_step
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    expected = cv2.cvtColor(
        cv2.imdecode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR),
        cv2.COLOR_BGR2RGB,
    )
    assert np.array_equal(P.jpeg_compression(frame, level), expected)


def test_jpeg_error_grows_and_colours_stay():
    frame = smooth_clip(1)[0]
    assert psnr(frame, P.jpeg_compression(frame, 1)) > psnr(frame, P.jpeg_compression(frame, 5))
    red = np.zeros((32, 32, 3), dtype=np.uint8)
    red[..., 0] = 220
    out = P.jpeg_compression(red, 1)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 30


# ---- resize (the reference's 'JPEG') ----


@pytest.mark.parametrize("level,factor", [(1, 2), (5, 6)])
def test_resize_is_reference_down_up(level, factor):
    frame = textured_frame(size=60)
    expected = cv2.resize(cv2.resize(frame, (60 // factor, 60 // factor)), (60, 60))
    out = P.resize_down_up(frame, level)
    assert out.shape == frame.shape and np.array_equal(out, expected)


def test_resize_detail_lost_grows_with_level():
    noise = np.random.default_rng(2).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    frame = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 1.5), None, 0, 255, cv2.NORM_MINMAX)  # band-limited detail
    errors = [np.mean((P.resize_down_up(frame, lv).astype(float) - frame) ** 2) for lv in P.LEVELS]
    assert errors == sorted(errors) and errors[0] < errors[-1]


# ---- VC ----


@pytest.mark.parametrize("level,crf", [(1, 30), (5, 40)])
def test_h264_encodes_at_level_crf(level, crf, monkeypatch):
    clip = smooth_clip()
    data = P.encode_h264(clip, crf, fps=25)
    assert re.findall(rb"crf=([0-9.]+)", data) == [f"{crf}.0".encode()]  # x264's options SEI
    seen = []
    original = P.reencode_h264
    monkeypatch.setattr(P, "reencode_h264", lambda frames, c, fps: seen.append(c) or original(frames, c, fps))
    out = P.video_compression(clip, level, fps=25)
    assert seen == [crf] and len(out) == len(clip) and out[0].shape == clip[0].shape


def test_h264_size_and_quality_fall_with_crf():
    clip = smooth_clip()
    sizes = {crf: len(P.encode_h264(clip, crf, 25)) for crf in (30, 40)}
    assert sizes[30] > sizes[40]
    quality = {}
    for level in (1, 5):
        decoded = P.video_compression(clip, level, 25)
        quality[level] = np.mean([psnr(a, b) for a, b in zip(clip, decoded, strict=True)])
    assert quality[1] > quality[5] + 1.0


def test_h264_odd_sizes_and_same_bytes():
    clip = [f[:63, :61] for f in smooth_clip(3)]
    out = P.reencode_h264(clip, 30, 25)
    assert [f.shape for f in out] == [(63, 61, 3)] * 3
    assert P.encode_h264(clip, 32, 25) == P.encode_h264(clip, 32, 25)


# ---- registry, mixed chain, determinism ----


def test_registry_and_levels():
    assert set(P.DISTORTIONS) | {"VC"} == {"CS", "CC", "BW", "GNC", "GB", "JPEG", "resize", "VC"}
    assert P.LEVELS == (1, 2, 3, 4, 5)
    with pytest.raises(ValueError):
        P.color_contrast(textured_frame(), 6)
    with pytest.raises(ValueError):
        P.perturb_clip(smooth_clip(1), "nope", 1, seed=0)


def test_mixed_chain_draws_two_to_four_distinct_steps_of_the_reference_seven():
    counts, names, levels = [], set(), set()
    for seed in range(300):
        chain = P.mixed_chain(np.random.default_rng(seed))
        steps = [name for name, _ in chain]
        assert len(set(steps)) == len(steps)
        counts.append(len(chain))
        names.update(steps)
        levels.update(level for _, level in chain)
    assert set(counts) == {2, 3, 4} and all(counts.count(k) > 70 for k in (2, 3, 4))
    # the reference's mixed videos draw from its seven types (its "JPEG" is our resize): no true JPEG
    assert names == {"CS", "CC", "BW", "GNC", "GB", "resize", "VC"} == set(P.DEEPERFORENSICS_SEVEN)
    assert levels == {1, 2, 3, 4, 5}
    assert {lv for _, lv in P.mixed_chain(np.random.default_rng(0), level=4)} == {4}


def test_mixed_chain_of_one_rng_state_is_the_same_at_every_level():
    for seed in range(40):
        random_levels = P.mixed_chain(np.random.default_rng(seed))
        for level in P.LEVELS:
            chain = P.mixed_chain(np.random.default_rng(seed), level=level)
            assert chain == [(name, level) for name, _ in random_levels]


def test_mixed_chain_seed_picks_the_chain_and_seed_the_frames():
    clip = smooth_clip(2, size=32)
    _, steps = P.perturb_clip(clip, "mixed", 2, seed=1, chain_seed=7)
    assert steps == P.mixed_chain(np.random.default_rng(7), level=2)
    for level in (1, 5):
        _, other_level = P.perturb_clip(clip, "mixed", level, seed=level, chain_seed=7)
        assert other_level == [(name, level) for name, _ in steps]
    assert P.perturb_clip(clip, "mixed", 2, seed=1)[1] == P.mixed_chain(np.random.default_rng(1), level=2)


@pytest.mark.parametrize("name", ["BW", "GNC", "mixed"])
def test_same_seed_same_frames_other_seed_differs(name):
    clip = smooth_clip(3)
    a, steps_a = P.perturb_clip(clip, name, 2 if name != "mixed" else None, seed=11)
    b, steps_b = P.perturb_clip(clip, name, 2 if name != "mixed" else None, seed=11)
    assert steps_a == steps_b and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    others = [P.perturb_clip(clip, name, 2 if name != "mixed" else None, seed=s)[0] for s in (12, 13, 14)]
    assert any(not all(np.array_equal(x, y) for x, y in zip(a, o, strict=True)) for o in others)


def test_random_distortions_change_between_frames():
    clip = [smooth_clip(1)[0]] * 2
    out, _ = P.perturb_clip(clip, "BW", 1, seed=5)
    assert not np.array_equal(out[0], out[1])  # fresh blocks per frame, as the reference draws


def test_perturbation_seed_is_stable():
    assert P.perturbation_seed(0, "vid", "GNC", 1) == P.perturbation_seed(0, "vid", "GNC", 1)
    assert P.perturbation_seed(0, "vid", "GNC", 1) != P.perturbation_seed(0, "vid", "GNC", 2)
