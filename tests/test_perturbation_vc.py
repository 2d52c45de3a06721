"""VC as DeeperForensics-1.0 applies it: its `video_compression` writes the whole video with
ffmpeg's libx264 at the level's CRF (`ffmpeg -i in -crf C -y out`: preset medium, mbtree on).
predict's sampled frames are encoded with the consecutive frames around them, not as a clip of
their own (32 frames 10 apart, which came out 1.3 to 2 dB below the whole-video encode)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

import inference.pipeline.faces
from common.video_writer import VideoWriter
from inference.distortions import perturbations as P
from inference.distortions.frame_perturbation import FramePerturbation, VideoSource, compression_windows
from inference.pipeline.faces import extract_faces, sample_frames
from tests.conftest import REPO_ROOT, shared_data


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def reference_encode(frames: list[np.ndarray], crf: int, fps: float) -> list[np.ndarray]:
    """The whole clip through libx264 with nothing set but the CRF, as the reference's ffmpeg command."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options={"crf": str(crf)})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return P.decode_video(buffer.getvalue())


def test_windows_cover_the_frames_around_each_sampled_one_and_merge():
    assert compression_windows(np.linspace(0, 299, 32).astype(int), 300) == [range(0, 300)], "DFDC: the whole video"
    assert compression_windows([0, 500, 999], 1000) == [range(0, 51), range(400, 551), range(899, 1000)]
    assert compression_windows([100, 251], 1000) == [range(0, 302)], "touching: one"
    assert compression_windows([100, 252], 1000) == [range(0, 151), range(152, 303)]
    assert compression_windows([0], 1) == [range(0, 1)], "a photo"
    assert compression_windows([140], 10) == [range(40, 141)], "a container stating too few frames"


def smooth_video(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = np.random.default_rng(2).normal(0, 5, (count, height, width, 3))
    return [
        np.clip(np.stack([xs * 3 + t * 2, ys * 3, (xs + ys) + 40], axis=2) + noise[t], 0, 255).astype(np.uint8)
        for t in range(count)
    ]


def memory_source(frames: list[np.ndarray], reads: list) -> VideoSource:
    def read(indices):
        reads.append(list(indices))
        return ((index, frames[index]) for index in indices if index < len(frames))

    return VideoSource(read, len(frames))


def test_each_sampled_frame_is_the_frame_of_its_windows_encode():
    video, reads = smooth_video(300), []
    decoded = {0: video[0], 299: video[299]}
    frames, applied = FramePerturbation("VC", 3).apply(decoded, "v.mp4", 25.0, memory_source(video, reads))
    assert reads == [[*range(0, 51), *range(199, 300)]], "the windows, read once, in order"
    assert applied["steps"] == [["VC", 3]]
    np.testing.assert_array_equal(frames[0], P.reencode_h264(video[0:51], 35, 25.0)[0])
    np.testing.assert_array_equal(frames[299], P.reencode_h264(video[199:300], 35, 25.0)[-1])
    without_source, _ = FramePerturbation("VC", 3).apply(decoded, "v.mp4", 25.0)
    assert not np.array_equal(without_source[299], frames[299]), "alone, the two frames are a clip of two"


def test_a_mixed_chain_holding_vc_runs_its_steps_on_the_window_and_again_the_same():
    video = smooth_video(60)
    decoded = {index: video[index] for index in (10, 30, 50)}
    for name in (f"v{i}.mp4" for i in range(40)):
        first_reads, second_reads = [], []
        frames, applied = FramePerturbation("mixed", 2, 5).apply(decoded, name, 25.0, memory_source(video, first_reads))
        names = [step for step, _ in applied["steps"]]
        if "VC" in names and any(step in ("BW", "GNC") for step in names[: names.index("VC")]):
            break
    else:
        pytest.fail("no chain of 40 videos had a random step before VC")
    again, _ = FramePerturbation("mixed", 2, 5).apply(decoded, name, 25.0, memory_source(video, second_reads))
    assert first_reads == second_reads == [list(range(0, 60))]
    assert all(np.array_equal(frames[i], again[i]) for i in decoded), "seeded: the same frames every time"
    assert all(frames[i].shape == video[i].shape and not np.array_equal(frames[i], video[i]) for i in decoded)


def test_h264_gives_the_same_bytes_in_every_process():
    """The same frames give the same bytes, also in a fresh process: one thread and mbtree off (with
    mbtree on, the reference's default, 24x24 frames encoded twice in one test process came out
    different now and then)."""
    code = (
        "import hashlib, numpy as np; from inference.distortions.perturbations import encode_h264; "
        "rng = np.random.default_rng(0); "
        "frames = [np.clip(rng.normal(120, 30, (48, 64, 3)) + t, 0, 255).astype(np.uint8) for t in range(30)]; "
        "print(hashlib.sha256(encode_h264(frames, 30, 25.0)).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True, timeout=120
        ).stdout.strip()
        for _ in range(2)
    }
    rng = np.random.default_rng(0)
    frames = [np.clip(rng.normal(120, 30, (48, 64, 3)) + t, 0, 255).astype(np.uint8) for t in range(30)]
    assert digests == {hashlib.sha256(P.encode_h264(frames, 30, 25.0)).hexdigest()}


@pytest.fixture(scope="module")
def portrait_copy(tmp_path_factory):
    """The DFDC portrait sample clip (720x1280, 301 frames) at half size, every third frame left out
    (201, at the clip's 30 fps: its content, its motion half as fast again), near-lossless: a
    sixth of the whole clip's encoding time. (Every other frame, 151, would leave the first and
    last frames in one VC window: no two windows to test.)"""
    path = tmp_path_factory.mktemp("vc") / "portrait.mp4"
    source = shared_data("dfdc_mini", "dfdc_train_part_10", "yhffcuhhjy.mp4")
    with av.open(str(source)) as container, VideoWriter(path, 30, 360, 640, crf=8) as writer:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 3 != 2:
                writer.write(cv2.resize(frame.to_ndarray(format="rgb24"), (360, 640), interpolation=cv2.INTER_AREA))
    return path


@pytest.mark.shared_data
@pytest.mark.slow
def test_vc_of_the_sampled_frames_is_the_whole_video_encode(portrait_copy, monkeypatch):
    """32 sampled frames of the clip are its whole-video encode, frame for frame. The one setting
    kept apart from the reference's, mbtree off (the same bytes every time), leaves them 0.25 dB
    (CRF 30) and 0.22 dB (CRF 40) below the reference's encode here (the whole clip at half size:
    0.42 and 0.43; full size: 0.09 and 0.15; a 1280x720 sample: 0.32 and 0.44). The sampled frames
    encoded as a clip of their own came out about 1.0 dB below here, out of the bounds below (the
    whole clip at half size: 1.37 and 1.41; full size: 36.2 against 37.5 dB at CRF 30, 31.7 against
    33.0 at CRF 40). 2 sampled frames 200 apart, each in its own window (0-50 and 100-200), are
    within 0.3 dB of the whole encode's (here 0.01 and 0.13 dB above it)."""
    captured = []

    def record(path, decoded, *args, **kwargs):
        captured.append(decoded)
        return inference.pipeline.faces.VideoFaces(path, sorted(decoded))

    monkeypatch.setattr(inference.pipeline.faces, "crop_faces", record)
    clean = sample_frames(portrait_copy, 400).decoded  # every frame
    every = [clean[index] for index in sorted(clean)]
    assert len(every) == 201
    for level, crf in ((1, 30), (5, 40)):
        reference, whole = reference_encode(every, crf, 30.0), P.reencode_h264(every, crf, 30.0)
        extract_faces(portrait_copy, None, 32, perturbation=FramePerturbation("VC", level))
        ours = captured[-1]
        assert len(ours) == 32 and all(np.array_equal(frame, whole[index]) for index, frame in ours.items())
        ours_db = np.mean([psnr(clean[index], frame) for index, frame in ours.items()])
        reference_db = np.mean([psnr(clean[index], reference[index]) for index in ours])
        assert reference_db - 0.5 < ours_db < reference_db + 0.1, (crf, ours_db, reference_db)
        extract_faces(portrait_copy, None, 2, perturbation=FramePerturbation("VC", level))
        apart = captured[-1]
        assert sorted(apart) == [0, 200]
        apart_db = np.mean([psnr(clean[index], frame) for index, frame in apart.items()])
        whole_db = np.mean([psnr(clean[index], whole[index]) for index in apart])
        assert abs(apart_db - whole_db) < 0.3, (crf, apart_db, whole_db)
