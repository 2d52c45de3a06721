"""Video reading and writing: round trip, atomic output, and clear errors on broken files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.video_io import VideoReadError, VideoWriter, iter_frames, probe_video, read_frames

BACKENDS = ("opencv", "pyav")


def _gradient_frames(count: int, width: int = 96, height: int = 64) -> list[np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width]
    return [
        np.stack([(xs * 2 + i * 8) % 256, (ys * 3) % 256, np.full_like(xs, 40 * i % 256)], -1).astype(np.uint8)
        for i in range(count)
    ]


@pytest.fixture
def small_video(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = _gradient_frames(12)
    with VideoWriter(path, fps=30000 / 1001, width=96, height=64, crf=12) as writer:
        for frame in frames:
            writer.write(frame)
    return path, frames


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_keeps_size_count_rate_and_pixels(small_video, backend):
    path, frames = small_video
    info = probe_video(path, backend)
    assert (info.width, info.height, info.frame_count) == (96, 64, 12)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    decoded = read_frames(path, backend=backend)
    assert sorted(decoded) == list(range(12))
    for index, frame in decoded.items():
        assert np.abs(frame.astype(int) - frames[index]).mean() < 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_requested_frames_are_returned(small_video, backend):
    path, frames = small_video
    decoded = read_frames(path, [0, 5, 11, 40], backend)
    assert sorted(decoded) == [0, 5, 11]
    assert np.abs(decoded[5].astype(int) - frames[5]).mean() < 4


def test_writer_leaves_nothing_when_interrupted(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError), VideoWriter(path, fps=25, width=64, height=64) as writer:
        writer.write(np.zeros((64, 64, 3), np.uint8))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_are_refused_with_the_file_name(tmp_path):
    with pytest.raises(ValueError, match="odd.mp4.*even"):
        VideoWriter(tmp_path / "odd.mp4", fps=25, width=65, height=64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_broken_files_raise_errors_naming_file_and_problem(small_video, tmp_path, backend):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n" * 20)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(small_video[0].read_bytes()[:2000])
    cases = {
        empty: "empty",
        text: "not a readable video",
        truncated: "not a readable video",
        tmp_path / "absent.mp4": "does not exist",
    }
    for path, reason in cases.items():
        with pytest.raises(VideoReadError, match=reason) as error:
            list(iter_frames(path, backend=backend))
        assert str(path) in str(error.value)
        with pytest.raises(VideoReadError):
            probe_video(path, backend)


def test_a_still_image_is_a_one_frame_video(tmp_path):
    image = _gradient_frames(1)[0]
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert probe_video(path).frame_count == 1
    frames = read_frames(path)
    assert list(frames) == [0] and np.array_equal(frames[0], image)
    assert read_frames(path, [3]) == {}
