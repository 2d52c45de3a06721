"""With no worker threads (a CPU's default), the reader decodes the next video's sampled frames in
one background thread while the current video is detected and classified: the same frames and
faces as reading in turn, failures kept to their own video, and never more than AHEAD_BYTES of
frames held ahead."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import inference.faces as faces_module
import inference.reader as reader_module
from inference.predict import parse_args
from inference.reader import FaceReader, fits_ahead
from preprocess.media_limits import MediaLimits
from preprocess.video_io import VideoReadError, probe_video

FRAMES = 6


@pytest.fixture(scope="module")
def test_dir(tmp_path_factory, demo_world) -> Path:
    """Three demo test videos (one copied under a second name) and a broken file between them."""
    folder = tmp_path_factory.mktemp("ahead")
    first, second = sorted((demo_world / "test_videos").glob("*.mp4"))[:2]
    shutil.copy(first, folder / "a.mp4")
    (folder / "b_broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    shutil.copy(second, folder / "c.mp4")
    shutil.copy(first, folder / "d.mp4")
    return folder


def read_everything(test_dir: Path, monkeypatch, events: list) -> dict[str, object]:
    """{name: VideoFaces or the exception} of every file of `test_dir`, in order, by a reader with
    no workers; `events` gets (what, name, thread) as decoding and detection start and end."""
    sample, crop = faces_module.sample_frames, faces_module.crop_faces

    def sampled(path, *args, **kwargs):
        events.append(("decode", Path(path).name, threading.current_thread().name))
        return sample(path, *args, **kwargs)

    def cropped(path, *args, **kwargs):
        events.append(("detect", Path(path).name, threading.current_thread().name))
        found = crop(path, *args, **kwargs)
        events.append(("detected", Path(path).name, threading.current_thread().name))
        return found

    monkeypatch.setattr(reader_module, "sample_frames", sampled)
    monkeypatch.setattr(faces_module, "sample_frames", sampled)
    monkeypatch.setattr(faces_module, "crop_faces", cropped)
    args = parse_args(["--test-dir", str(test_dir), "--models", "m.pt", "--frames", str(FRAMES)])
    reader = FaceReader(args, torch.device("cpu"), 0)
    results = {}
    try:
        for path, future in reader.read_all(sorted(test_dir.iterdir())):
            try:
                results[path.name] = future.result()
            except Exception as error:  # the failure of one video, as predict records it
                results[path.name] = error
    finally:
        reader.close()
    return results


def test_the_next_video_is_decoded_in_the_background_while_this_one_is_detected(test_dir, monkeypatch):
    events: list = []
    ahead = read_everything(test_dir, monkeypatch, events)
    decoders = {name: thread for what, name, thread in events if what == "decode"}
    # the broken file is not decoded ahead (its header cannot be read): in turn, where it fails
    assert decoders == {"a.mp4": "faces_0", "b_broken.mp4": "MainThread", "c.mp4": "faces_0", "d.mp4": "faces_0"}
    # d's frames were being decoded before c's detection ended: decoding overlaps the video before it
    assert events.index(("decode", "d.mp4", "faces_0")) < events.index(("detected", "c.mp4", "MainThread")), events
    assert isinstance(ahead["b_broken.mp4"], VideoReadError) and "b_broken.mp4" in str(ahead["b_broken.mp4"])

    monkeypatch.undo()
    monkeypatch.setattr(reader_module, "fits_ahead", lambda *args: False)  # every video read in turn
    in_turn_events: list = []
    in_turn = read_everything(test_dir, monkeypatch, in_turn_events)
    assert {thread for what, _, thread in in_turn_events if what == "decode"} == {"MainThread"}
    assert type(in_turn["b_broken.mp4"]) is type(ahead["b_broken.mp4"])
    for name in ("a.mp4", "c.mp4", "d.mp4"):
        assert ahead[name].frame_indices == in_turn[name].frame_indices and ahead[name].boxes == in_turn[name].boxes
        assert len(ahead[name].crops) == len(in_turn[name].crops) > 0
        for first, second in zip(ahead[name].crops, in_turn[name].crops, strict=True):
            np.testing.assert_array_equal(first, second)


def test_only_videos_whose_frames_fit_the_budget_are_decoded_ahead(test_dir, tmp_path):
    video = test_dir / "a.mp4"
    info = probe_video(video)
    needed = FRAMES * info.width * info.height * 3
    limits = MediaLimits()
    assert fits_ahead(video, FRAMES, limits, budget=needed)
    assert not fits_ahead(video, FRAMES, limits, budget=needed - 1)
    # 32 frames of 1920x1080 (199 MB) fit the default budget; 32 of 3840x2160 do not
    assert 32 * 1920 * 1080 * 3 <= reader_module.AHEAD_BYTES < 32 * 3840 * 2160 * 3
    assert not fits_ahead(video, FRAMES, MediaLimits(max_pixels=info.width * info.height - 1), budget=needed)
    assert not fits_ahead(test_dir / "b_broken.mp4", FRAMES, limits)
    photo = tmp_path / "face.jpg"
    cv2.imwrite(str(photo), np.zeros((16, 16, 3), np.uint8))
    assert not fits_ahead(photo, FRAMES, limits)
