"""Fast mode's cheaper reading of a video: the sampled frames decoded with the frames no other frame
needs skipped (preprocess/sparse_decode.py), and the frame at detection size computed only around
the seeds (preprocess/faces/lazy_resize.py). Both must give exact mode's pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from common.media_limits import MediaLimits
from common.video_io import MediaTooLargeError
from common.video_writer import VideoWriter
from inference.pipeline import faces
from inference.pipeline.faces import sample_frames, sample_indices
from preprocess import sparse_decode
from preprocess.faces.lazy_resize import TILE, LazilyResized
from tests.test_media_limits import cut_video  # noqa: F401 (a fixture)

FRAMES = 60


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """60 frames of a smooth texture panning, by libx264's defaults: two frames in three are
    B-frames, about half of them unreferenced (as in DFDC's clips)."""
    path = tmp_path_factory.mktemp("sparse") / "moving.mp4"
    noise = np.random.default_rng(3).integers(0, 255, (96, 400, 3), np.uint8)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 6), None, 0, 255, cv2.NORM_MINMAX)
    with VideoWriter(path, fps=25, width=160, height=96, crf=18) as writer:
        for k in range(FRAMES):
            writer.write(np.ascontiguousarray(texture[:, 3 * k : 3 * k + 160]))
    return path


def test_sparse_decoding_gives_exact_modes_frames_and_skips_the_unreferenced(video):
    ordinary, sparse = sample_frames(video, 8), sample_frames(video, 8, sparse=True)
    assert sparse.requested == ordinary.requested == sample_indices(FRAMES, 8) and sparse.partial_reason is None
    assert sorted(sparse.decoded) == sorted(ordinary.decoded)
    for index, frame in ordinary.decoded.items():
        np.testing.assert_array_equal(sparse.decoded[index], frame, err_msg=f"frame {index}")
    assert sparse.fps == ordinary.fps == 25
    read = sparse_decode.decode_sampled(video, lambda count: sample_indices(count, 8))
    assert read.packets == FRAMES and sorted(read.frames) == read.requested
    assert 8 <= read.decoded <= FRAMES * 2 // 3, "the unreferenced frames between the sampled ones are not decoded"


def test_a_video_whose_times_cannot_give_the_order_is_read_the_ordinary_way(video, monkeypatch):
    monkeypatch.setattr(sparse_decode, "display_times", lambda container: None)
    sparse = sample_frames(video, 8, sparse=True)
    assert sparse.requested == sample_indices(FRAMES, 8) and len(sparse.decoded) == 8


def test_a_cut_video_is_read_the_ordinary_way_and_flagged_partial(cut_video, caplog):  # noqa: F811
    """Its container states 40 frames and holds 28: fewer sampled frames come back than asked for."""
    ordinary = sample_frames(cut_video, 32)
    caplog.clear()
    with caplog.at_level("WARNING", logger="inference.pipeline.faces"):
        sparse = sample_frames(cut_video, 32, sparse=True)
    assert sparse.partial_reason == ordinary.partial_reason and sorted(sparse.decoded) == sorted(ordinary.decoded)
    assert len(sparse.decoded) < 32 and "the file may be cut" in caplog.text


def test_a_video_over_the_frame_cap_is_refused_before_it_is_decoded(video, monkeypatch):
    decoded = []
    monkeypatch.setattr(sparse_decode, "check_frame", lambda *args: decoded.append(args))
    with pytest.raises(MediaTooLargeError, match="60 frames, more than the 10"):
        faces.sample_frames(video, 8, limits=MediaLimits(max_frames=10), sparse=True)
    assert not decoded


@pytest.mark.parametrize(("height", "width"), [(1080, 1920), (720, 1280), (1280, 720), (360, 640)])
def test_the_lazily_resized_frame_is_pils_whole_resize_bit_for_bit(height, width):
    frame = np.random.default_rng(height).integers(0, 255, (height, width, 3), np.uint8)
    size = (width // 2, height // 2)
    whole = np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC))
    lazy = LazilyResized(frame, size)
    assert lazy.shape == whole.shape and lazy.tiles_resized == 0
    box = lazy[100:180, 37:120]
    np.testing.assert_array_equal(box, whole[100:180, 37:120])
    assert lazy.tiles_resized == len(range(100 // TILE, 179 // TILE + 1)) * len(range(37 // TILE, 119 // TILE + 1))
    for top, left in ((0, 0), (size[1] - 50, size[0] - 70), (5, size[0] - 3)):  # at the borders
        np.testing.assert_array_equal(lazy[top : top + 50, left : left + 70], whole[top : top + 50, left : left + 70])
    np.testing.assert_array_equal(lazy[:, :], whole)
