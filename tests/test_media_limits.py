"""Media that could exhaust memory, or be judged in part without a word: refused from its headers
before a frame is decoded (a photo or video frame over a pixel cap, a video stating too many
frames, a stream whose frames are larger than its header says), one error per file through
inference.predict and inference.detect; brightening without float copies; frames requested against
frames decoded, and a cut JPEG, flagged; PyAV turning frames as OpenCV does; range-checked
--frames and --size."""

from __future__ import annotations

import csv
import json
import logging
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from inference.prediction import predict_folder as predict
from inference.serving import detection as detect
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


@pytest.fixture(scope="module")
def bench():
    from inference.benchmarks import hostile_bench  # the media generators (the module is new)

    return hostile_bench


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _no_decoding(monkeypatch):
    """Make every way of decoding pixels fail the test: headers only."""
    from common import video_io

    def decoded(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(video_io.cv2, "imread", decoded)
    monkeypatch.setattr(video_io.cv2, "VideoCapture", decoded)
    monkeypatch.setattr(video_io, "probe_video", decoded)  # it may decode a first frame (FFmpeg's analysis)
    monkeypatch.setattr(video_io, "iter_frames", decoded)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((14000, 14000), "14000x14000 pixels (196 MP), more than the 25 MP a photo may have here"),  # past Pillow's cap
        ((6000, 6000), "6000x6000 pixels (36 MP), more than the 25 MP a photo may have here"),
    ],
)
def test_a_photo_over_the_cap_is_refused_from_its_header(bench, size, expected, tmp_path, monkeypatch):
    from common.video_io import MediaLimits, MediaTooLargeError, check_media

    path = bench.write_grey_png(tmp_path / "bomb.png", *size, grey=0)
    assert path.stat().st_size < 1_000_000
    _no_decoding(monkeypatch)
    tracemalloc.start()
    try:
        with pytest.raises(MediaTooLargeError, match="bomb.png") as refused:
            check_media(path, MediaLimits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused.value.reason == f"{expected} (raise it with --max-photo-pixels)"
    assert peak < 5_000_000, f"{peak} bytes to read a header"


def test_a_photo_within_the_cap_is_read_from_its_header_and_decoded_once(tmp_path, monkeypatch):
    from common import video_io

    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 40 wide, 30 high becomes 30 wide, 40 high
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path, exif=exif)
    reads = []
    real_imread = video_io.cv2.imread
    monkeypatch.setattr(video_io.cv2, "imread", lambda *args: reads.append(args) or real_imread(*args))
    info = video_io.check_media(path, video_io.MediaLimits(max_photo_pixels=1200))
    assert (info.width, info.height, info.frame_count) == (30, 40, 1) and reads == []
    frames = video_io.read_frames(path)
    assert frames[0].shape == (40, 30, 3) and len(reads) == 1


def test_a_video_over_the_caps_is_refused_before_a_frame_is_decoded(bench, tmp_path, monkeypatch):
    from common.video_io import MediaLimits, MediaTooLargeError, check_media

    big = bench.write_png_video(tmp_path / "big.mov", 4000, 4000, frames=3)
    many = bench.write_png_video(tmp_path / "many.mov", 16, 16, frames=600, fps=1000)
    _no_decoding(monkeypatch)
    with pytest.raises(MediaTooLargeError, match="big.mov") as refused:
        check_media(big, MediaLimits())
    assert refused.value.reason == (
        "4000x4000 pixels (16 MP), more than the 8.85 MP a video frame may have here (raise it with --max-pixels)"
    )
    with pytest.raises(MediaTooLargeError, match="many.mov") as refused:
        check_media(many, MediaLimits(max_frames=500))
    assert refused.value.reason == "600 frames, more than the 500 a video may have here (raise it with --max-frames)"


def test_frames_larger_than_the_header_says_are_refused_before_opencv_decodes_them(bench, tmp_path, monkeypatch):
    """A stream stating 64x64 whose second frame is larger: OpenCV would decode that frame at full
    size and only then scale it down, so the keyframes are decoded first under FFmpeg's own cap."""
    from common import video_io
    from common.video_io import MediaLimits, MediaTooLargeError, check_media, iter_frames

    liar = bench.write_png_video(tmp_path / "liar.mov", 64, 64, frames=3, sizes=[(64, 64), (640, 640), (640, 640)])
    honest = bench.write_png_video(tmp_path / "honest.mov", 64, 64, frames=3)
    limits = MediaLimits(max_pixels=64 * 64)
    with pytest.MonkeyPatch.context() as patch:  # refused before OpenCV opens the file
        patch.setattr(video_io.cv2, "VideoCapture", lambda *a: pytest.fail("OpenCV opened the file"))
        with pytest.raises(MediaTooLargeError, match="a frame is over the 0.0041 MP cap"):
            check_media(liar, limits)
    assert (check_media(honest, limits).width, check_media(honest, limits).height) == (64, 64)
    with pytest.raises(MediaTooLargeError, match="a frame is over the 0.0041 MP cap"):  # PyAV reads under the cap
        list(iter_frames(liar, backend="pyav", limits=limits))
    assert len(list(iter_frames(liar, backend="pyav"))) == 3, "without limits the frames decode"


def test_a_gif_whose_frame_is_huge_is_refused_with_a_one_line_reason(tmp_path):
    from common.video_io import MediaLimits, MediaTooLargeError, check_media

    gif = bytearray(_tiny_gif())
    descriptor = _image_descriptor(gif)  # its width and height set to 60000 (the screen stays 1x1)
    gif[descriptor + 5 : descriptor + 9] = (60000).to_bytes(2, "little") * 2
    path = tmp_path / "gif_named.png"
    path.write_bytes(bytes(gif))
    with pytest.raises(MediaTooLargeError, match="a frame over the 179 MP that Pillow opens"):
        check_media(path, MediaLimits())


def _image_descriptor(gif: bytes) -> int:
    """Where a GIF's first image descriptor starts: after the header, the global colour table and
    any extension blocks."""
    position = 13 + (3 * 2 ** ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    while gif[position] == 0x21:  # an extension: its label, then sub-blocks until a 0 length
        position += 2
        while gif[position]:
            position += gif[position] + 1
        position += 1
    assert gif[position] == 0x2C
    return position


def _tiny_gif() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def over_the_caps(tmp_path_factory, bench):
    """One file over each cap, at small sizes (the caps lowered): a photo, a video's frames, a
    video's stated frame count; and a good photo."""
    folder = tmp_path_factory.mktemp("over_the_caps")
    bench.write_grey_png(folder / "wide.png", 400, 300, grey=20)
    bench.write_png_video(folder / "big.mov", 400, 400, frames=2)
    bench.write_png_video(folder / "many.mov", 16, 16, frames=600, fps=1000)
    Image.fromarray(builtin_photos()["astronaut"][::2, ::2]).save(folder / "astronaut.jpg")  # 256x256
    return folder


CAPS = ["--max-photo-pixels", "100000", "--max-pixels", "100000", "--max-frames", "500"]
REFUSALS = {
    "wide.png": "400x300 pixels (0.12 MP), more than the 0.1 MP a photo may have here "
    "(raise it with --max-photo-pixels)",
    "big.mov": "400x400 pixels (0.16 MP), more than the 0.1 MP a video frame may have here "
    "(raise it with --max-pixels)",
    "many.mov": "600 frames, more than the 500 a video may have here (raise it with --max-frames)",
}


def test_predict_gives_each_file_over_a_cap_one_error_row(over_the_caps, checkpoint, tmp_path):
    out = tmp_path / "submission.csv"
    models = ["--models", str(checkpoint), "--runtime", "torch"]
    assert predict.main(["--test-dir", str(over_the_caps), *models, *CAPS, "--output", str(out)]) == 0
    scores = {row["filename"]: float(row["label"]) for row in _rows(out)}
    errors = {row["filename"]: row for row in _rows(out.parent / "errors.csv")}
    assert sorted(errors) == sorted(REFUSALS), "the photo within the caps is scored"
    for name, reason in REFUSALS.items():
        assert errors[name]["stage"] == "decode" and errors[name]["reason"].endswith(reason)
        assert scores[name] == 0.5
    assert scores["astronaut.jpg"] != 0.5


def test_detect_gives_each_file_over_a_cap_one_error_line(over_the_caps, checkpoint, capsys):
    models = ["--models", str(checkpoint), "--runtime", "torch"]
    assert detect.main([str(over_the_caps), *models, *CAPS]) == 1, "1: some files could not be judged"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    for name, reason in REFUSALS.items():
        assert f"error: {over_the_caps / name}: {reason}" in lines
    assert any(line.split()[0] in ("REAL", "FAKE") and "astronaut.jpg" in line for line in lines)


def _old_brightened(frame: np.ndarray) -> np.ndarray:
    """brightened() as it was (55e228b): float copies of the whole frame."""
    normalised = frame.astype(np.float32) / 255.0
    gamma = np.log(0.45) / np.log(min(max(float(normalised.mean()), 1e-3), 0.99))
    return (np.clip(normalised**gamma, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def test_brightening_gives_the_old_result_without_a_float_copy_of_the_frame():
    from inference.pipeline.faces import brightened

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 80, (480, 640, 3), dtype=np.uint8)
    new, old = brightened(frame), _old_brightened(frame)
    assert new.dtype == np.uint8 and new.shape == frame.shape
    assert np.abs(new.astype(int) - old).max() <= 1
    assert new.mean() > frame.mean() + 40, "brightened towards mid-grey"

    large = np.full((6000, 6000, 3), 20, np.uint8)
    tracemalloc.start()
    try:
        brightened(large)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * large.nbytes, f"{peak / large.nbytes:.1f}x the frame's bytes"


def _faststart_copy(source: Path, target: Path) -> Path:
    """The video with its index first, as phones and web servers write them: cut short, it still
    opens and states every frame."""
    with av.open(str(source)) as reading, av.open(str(target), "w", options={"movflags": "faststart"}) as writing:
        stream = writing.add_stream_from_template(reading.streams.video[0])
        for packet in reading.demux(reading.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                writing.mux(packet)
    return target


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """A 40-frame video of a face, cut at 70% of its bytes (its index still states 40 frames)."""
    from common.video_io import VideoWriter

    folder = tmp_path_factory.mktemp("cut")
    face = builtin_photos()["astronaut"][::2, ::2]
    with VideoWriter(folder / "whole.mp4", fps=25, width=256, height=256, crf=18) as writer:
        for index in range(40):
            writer.write(np.roll(face, index, axis=1))
    whole = _faststart_copy(folder / "whole.mp4", folder / "faststart.mp4").read_bytes()
    cut = folder / "videos" / "cut.mp4"
    cut.parent.mkdir()
    cut.write_bytes(whole[: int(len(whole) * 0.7)])
    return cut


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
def test_a_cut_video_is_flagged_with_frames_requested_and_decoded(cut_video, backend, caplog):
    from common.video_io import probe_video
    from inference.pipeline.faces import sample_frames

    assert probe_video(cut_video, backend).frame_count == 40, "the container states every frame"
    with caplog.at_level(logging.WARNING):
        sampled = sample_frames(cut_video, 32, backend)
    assert len(sampled.requested) == 32 and 10 < len(sampled.decoded) < 32
    expected = f"decoded {len(sampled.decoded)} of 32 sampled frames: the file may be cut"
    assert sampled.partial_reason == expected
    assert f"{cut_video}: {expected}" in caplog.text


def test_predict_details_say_frames_requested_and_decoded(cut_video, checkpoint, tmp_path, caplog):
    out = tmp_path / "submission.csv"
    models = ["--models", str(checkpoint), "--runtime", "torch"]
    with caplog.at_level(logging.WARNING):
        assert predict.main(["--test-dir", str(cut_video.parent), *models, "--output", str(out)]) == 0
    (details,) = [json.loads(line) for line in (out.parent / "details.jsonl").read_text().splitlines()]
    assert details["error"] is None, "a cut video is still judged, on what it holds"
    assert details["frames_requested"] == 32 and details["frames_decoded"] == details["frames_sampled"] < 32
    assert details["partial"] is True
    assert details["partial_reason"].startswith(f"decoded {details['frames_decoded']} of 32 sampled frames")
    assert "cut.mp4" in caplog.text and "the file may be cut" in caplog.text


def test_detect_says_a_judgement_rests_on_part_of_a_cut_video(cut_video, checkpoint, capsys):
    models = ["--models", str(checkpoint), "--runtime", "torch"]
    assert detect.main([str(cut_video), *models, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["frames"]["requested"] == 32 and document["frames"]["decoded"] < 32
    assert document["partial_reason"].startswith(f"decoded {document['frames']['decoded']} of 32 sampled frames")
    assert detect.main([str(cut_video), *models]) == 0
    assert "partial: decoded" in capsys.readouterr().out, "the summary line says so too"


def test_a_cut_jpeg_is_flagged_and_a_whole_one_is_not(tmp_path, caplog):
    from common.video_io import jpeg_is_cut
    from inference.pipeline.faces import sample_frames

    face = builtin_photos()["astronaut"]
    exif = Image.Exif()
    exif[0x0112] = 1
    whole = tmp_path / "whole.jpg"
    Image.fromarray(face).save(whole, quality=90, exif=exif)
    progressive = tmp_path / "progressive.jpg"
    Image.fromarray(face).save(progressive, quality=90, progressive=True)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    decoded = cv2.imread(str(cut))
    assert decoded is not None and decoded.shape == face.shape, "OpenCV decodes it, its missing part grey"
    assert [jpeg_is_cut(p) for p in (whole, progressive, cut)] == [False, False, True]
    assert sample_frames(whole).partial_reason is None
    with caplog.at_level(logging.WARNING):
        sampled = sample_frames(cut)
    assert sampled.partial_reason.startswith("the JPEG ends before its end-of-image marker")
    assert f"{cut}: the JPEG ends" in caplog.text


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_pyav_turns_frames_by_the_display_rotation_as_opencv_does(rotation, tmp_path):
    from common.video_io import read_frames

    path = tmp_path / "turned.mp4"
    image = np.zeros((64, 96, 3), np.uint8)
    image[:16, :24] = 255  # a mark in the top left corner
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(rotation)
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    by_opencv, by_pyav = read_frames(path, backend="opencv"), read_frames(path, backend="pyav")
    assert sorted(by_opencv) == sorted(by_pyav) == [0, 1, 2]
    expected_shape = (64, 96, 3) if rotation == 180 else (96, 64, 3)
    for index in by_opencv:
        assert by_opencv[index].shape == by_pyav[index].shape == expected_shape
        assert np.abs(by_opencv[index].astype(int) - by_pyav[index]).max() <= 2
    mark = np.argwhere(by_pyav[0][..., 0] > 128)
    corner = {90: (95, 0), -90: (0, 63), 180: (63, 95)}[rotation]  # where the top left corner is shown
    assert np.abs(mark - corner).min(axis=0).max() == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--frames", "0"], "argument --frames: must be from 1 to 1000, got 0"),
        (["--frames", "5000"], "argument --frames: must be from 1 to 1000, got 5000"),
        (["--size", "-5"], "argument --size: must be from 32 to 2048, got -5"),
        (["--max-pixels", "0"], "argument --max-pixels: must be more than 0, got 0"),
    ],
)
@pytest.mark.parametrize("tool", ["predict", "detect"])
def test_out_of_range_settings_stop_at_the_command_line(tool, arguments, message, tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    command = {"predict": ["--test-dir", str(tmp_path / "videos")], "detect": [str(tmp_path / "videos")]}[tool]
    main = {"predict": predict.main, "detect": detect.main}[tool]
    with pytest.raises(SystemExit) as stopped:
        main([*command, "--models", str(tmp_path / "none.pt"), *arguments])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_the_hostile_bench_explains_itself(bench, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert "declared_1000fps.mov" in text and "peak resident memory" in text
