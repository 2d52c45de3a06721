"""Demo world planning and camera animation: counts, parts, identities, framing, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from preprocess.demo_world.camera import MIN_FACE_HEIGHT_PX
from preprocess.demo_world.identities import Identity
from preprocess.demo_world.plan import FACE_SWAP, PART_STRIDE, SELF_BLEND, plan_world, split_identities
from preprocess.demo_world.render import RealClip, sample_clip_format


@pytest.mark.parametrize("videos,test_videos", [(6, 2), (36, 12), (10, 0), (2, 3)])
def test_plan_counts_parts_and_unique_names(videos, test_videos):
    clips = plan_world(["a", "b", "c"], videos, test_videos, seed=4)
    train = [clip for clip in clips if clip.split == "train"]
    test = [clip for clip in clips if clip.split == "test"]
    assert sum(len(clip.names) for clip in train) == videos
    assert sum(len(clip.names) for clip in test) == test_videos
    names = [name for clip in clips for name in clip.names]
    assert len(names) == len(set(names))
    assert all(clip.part is not None and clip.part % PART_STRIDE == 0 for clip in train)
    assert len({clip.part for clip in train}) == min(len(train), 4)
    fakes = [fake for clip in clips for fake in clip.fakes]
    for clip in clips:
        for fake in clip.fakes:
            if fake.method == FACE_SWAP:
                assert fake.source_identity not in (None, clip.identity)
            else:
                assert fake.method == SELF_BLEND and fake.source_identity is None
    if len(fakes) >= 3:
        assert {fake.method for fake in fakes} == {FACE_SWAP, SELF_BLEND}
    assert plan_world(["a", "b", "c"], videos, test_videos, seed=4) == clips
    assert plan_world(["a", "b", "c"], videos, test_videos, seed=5) != clips


def test_test_identities_are_held_out_when_there_are_enough():
    identities = [f"person_{i}" for i in range(8)]
    train_ids, test_ids = split_identities(identities)
    assert set(train_ids).isdisjoint(test_ids) and len(test_ids) == 2
    clips = plan_world(identities, 30, 10, seed=0)
    used_in_test = {c.identity for c in clips if c.split == "test"} | {
        f.source_identity for c in clips if c.split == "test" for f in c.fakes if f.source_identity
    }
    used_in_train = {c.identity for c in clips if c.split == "train"} | {
        f.source_identity for c in clips if c.split == "train" for f in c.fakes if f.source_identity
    }
    assert used_in_test <= set(test_ids) and used_in_train <= set(train_ids)


def test_clip_formats_stay_in_the_promised_ranges():
    formats = [sample_clip_format(np.random.default_rng(seed)) for seed in range(300)]
    for fmt in formats:
        assert 320 <= max(fmt.width, fmt.height) <= 1280
        assert fmt.width % 2 == 0 and fmt.height % 2 == 0
        assert 15 <= fmt.fps <= 30 and 2.0 <= fmt.frame_count / fmt.fps <= 5.05
        assert 18 <= fmt.crf <= 30
    assert any(f.height > f.width for f in formats) and any(f.width > f.height for f in formats)
    assert len({max(f.width, f.height) for f in formats}) >= 5


def _synthetic_identity() -> Identity:
    image = np.full((200, 160, 3), 120, np.uint8)
    image[60:140, 40:120] = 200
    landmarks = np.array([[62, 90], [98, 90], [80, 105], [66, 122], [94, 122]], np.float32)
    return Identity("synthetic", image, np.array([40, 60, 120, 140], np.float32), landmarks)


@pytest.mark.parametrize("seed", range(12))
def test_camera_keeps_the_whole_face_in_frame_and_large_enough(seed):
    clip = RealClip(_synthetic_identity(), np.random.default_rng(seed))
    fmt = clip.format
    for index in np.linspace(0, fmt.frame_count - 1, 9).astype(int):
        box, landmarks = clip.expected_face(index)
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= fmt.width and box[3] <= fmt.height
        assert box[3] - box[1] >= 0.85 * MIN_FACE_HEIGHT_PX
        assert (landmarks >= 0).all() and (landmarks[:, 0] <= fmt.width).all()


def test_same_seed_renders_the_same_frames_and_other_seeds_do_not():
    identity = _synthetic_identity()
    first, again = RealClip(identity, np.random.default_rng(7)), RealClip(identity, np.random.default_rng(7))
    other = RealClip(identity, np.random.default_rng(8))
    for index in (0, 5, first.format.frame_count - 1):
        assert np.array_equal(first.frame(index), again.frame(index))
    assert first.format != other.format or not np.array_equal(first.frame(0), other.frame(0))
