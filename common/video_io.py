"""Reading videos and photos with OpenCV or PyAV (FFmpeg), frames as RGB uint8 arrays (writing: video_writer).

Media from outside (inference) is checked against `MediaLimits` before a frame is decoded:
`check_media` reads only the headers (a photo's size, a video's stated size and frame count) and
raises `MediaTooLargeError` for a file over a cap. A video's keyframes (where a stream can change
its size) are then decoded once under FFmpeg's own pixel cap, which refuses a frame over it before
allocating it, so a stream whose frames are larger than its header says is refused before OpenCV
(which cannot be given that cap) decodes it at full size; PyAV reads under that cap throughout, and
`iter_frames(..., limits=...)` checks every decoded frame as well.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from common.cli import InputError
from common.media_limits import MAX_FRAMES, MAX_PHOTO_PIXELS, MAX_VIDEO_PIXELS, MediaLimits  # noqa: F401 (re-exported)
from common.video_writer import VideoWriter as VideoWriter  # written here before it had a module

logger = logging.getLogger(__name__)


class VideoReadError(InputError, RuntimeError):
    """A video could not be opened or decoded; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class MediaTooLargeError(VideoReadError):
    """A photo or video over a cap of `MediaLimits`: refused before its frames are decoded."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frame_count: int


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
BACKENDS = ("opencv", "pyav")
# Measured on DFDC-size clips (1280x720 H.264, 2 CPU cores): OpenCV decodes ~20% faster than
# PyAV, both for every frame and for every 10th frame, so it is the default for reading.
DEFAULT_BACKEND = "opencv"


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _check_file(path: Path) -> None:
    if path.is_symlink() and not path.exists():
        raise VideoReadError(path, f"a link to {os.readlink(path)}, which does not exist")
    if not path.is_file():
        raise VideoReadError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")


# EXIF orientations that turn a photo a quarter turn (OpenCV's imread applies them): width and height swap.
_QUARTER_TURNS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
_PILLOW_WARNINGS = threading.Lock()


def _photo_header(path: Path) -> tuple[int, int]:
    """A photo's (width, height) as shown (EXIF orientation applied), from its header: no pixel
    is decoded."""
    _check_file(path)
    try:
        with _PILLOW_WARNINGS, warnings.catch_warnings():  # the filters are global: one thread at a time
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our caps decide
            with Image.open(path) as image:
                width, height = image.size
                turned = image.getexif().get(_EXIF_ORIENTATION) in _QUARTER_TURNS
    except Image.DecompressionBombError:
        # Pillow's own cap (~179 MP), far above ours: its message names no size, so read it past the check.
        width, height = _header_size_past_bomb_check(path)
        turned = False
    except UnidentifiedImageError as error:
        raise VideoReadError(path, "not a readable image") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise VideoReadError(path, f"not a readable image ({error})") from error
    return (height, width) if turned else (width, height)


def _header_size_past_bomb_check(path: Path) -> tuple[int, int]:
    """The size a photo's header states, through Pillow's format registry (as Image.open does,
    without its decompression-bomb check, which refuses before saying the size)."""
    Image.init()
    with open(path, "rb") as file:
        prefix = file.read(16)
        for name in Image.ID:
            factory, accept = Image.OPEN[name]
            accepted = accept(prefix) if accept else True
            if not accepted or isinstance(accepted, str):
                continue
            file.seek(0)
            try:
                return factory(file, str(path)).size
            except Image.DecompressionBombError:  # a format that checks a frame of its own as it opens (GIF)
                raise MediaTooLargeError(
                    path, f"a frame over the {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP that Pillow opens"
                ) from None
            except (SyntaxError, IndexError, TypeError, ValueError, OSError):
                continue
    raise VideoReadError(path, "not a readable image")


def jpeg_is_cut(path: str | os.PathLike) -> bool:
    """Whether a JPEG file ends before its end-of-image marker (OpenCV decodes such a file with a
    warning only, its missing part grey). False for anything that is not a JPEG."""
    with open(path, "rb") as file:
        if file.read(2) != b"\xff\xd8":
            return False
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            position = 2
            while position + 4 <= len(data):
                if data[position] != 0xFF:
                    return False  # not the marker layout this walk knows: no claim
                marker = data[position + 1]
                if marker == 0xDA:  # start of scan: in the coded data, FF D9 can only be the end marker
                    return data.find(b"\xff\xd9", position) < 0
                if marker == 0xFF:
                    position += 1  # fill byte
                elif 0xD0 <= marker <= 0xD7 or marker == 0x01:
                    position += 2  # markers without a length
                else:
                    position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
            return True  # the file ends inside its headers


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoReadError(path, "not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def open_pyav(path: Path):
    _check_file(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise VideoReadError(path, f"not a readable video container ({error})") from error
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "container has no video stream")
    return container


def _open_opencv(path: Path) -> cv2.VideoCapture:
    _check_file(path)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(path, "not a readable video container (OpenCV could not open it)")
    return capture


def probe_video(path: str | os.PathLike, backend: str = DEFAULT_BACKEND) -> VideoInfo:
    """Size, frame rate and frame count as the container states them (a still image is one frame,
    its size read from its header)."""
    path = Path(path)
    if is_image(path):
        width, height = _photo_header(path)
        return VideoInfo(width, height, 0.0, 1)
    if backend == "opencv":
        capture = _open_opencv(path)
        try:
            info = VideoInfo(
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                float(capture.get(cv2.CAP_PROP_FPS)),
                int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            )
        finally:
            capture.release()
        if info.frame_count > 0 and info.width > 0:
            return info
    with open_pyav(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        frame_count = stream.frames
        if frame_count <= 0:
            frame_count = sum(1 for packet in container.demux(stream) if packet.size > 0)
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, frame_count)


def _video_header(path: Path) -> VideoInfo | None:
    """A video's size and frame count as its container states them, with no frame decoded (FFmpeg's
    stream analysis decodes a frame where it may: no decoder is allowed it here); 0 where unstated,
    None where PyAV cannot open the file."""
    _check_file(path)
    try:
        container = av.open(str(path), options={"codec_whitelist": "none"})
    except (av.FFmpegError, UnicodeDecodeError):
        return None
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, max(0, stream.frames))


def decoder_cap(limits: MediaLimits) -> dict[str, str]:
    """FFmpeg's own cap: a decoder refuses a frame over it before allocating the frame."""
    return {"max_pixels": str(limits.max_pixels)}


def _scan_frame_sizes(path: Path, limits: MediaLimits) -> None:
    """Decode the keyframes of a video (the frames where its size can change) under FFmpeg's pixel
    cap, and refuse it when one is over: a stream that states a small size in its header and then
    grows would otherwise be decoded at full size by OpenCV, which cannot be given the cap and scales
    each frame down only after decoding it. The keyframes of H.264 and the like are a few per clip;
    an intra-only stream (PNG, MJPEG) is decoded once more here. A keyframe that does not decode for
    another reason is left to the reader, which says so."""
    try:
        container = av.open(str(path), stream_options=[decoder_cap(limits)])  # its stream analysis, capped too
    except av.FFmpegError as error:
        if error.errno == errno.EINVAL:
            raise MediaTooLargeError(
                path, f"its first frame is over the {limits.max_pixels / 1e6:.3g} MP cap"
            ) from None
        return
    with container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        stream.codec_context.options = decoder_cap(limits)
        try:
            for index, packet in enumerate(container.demux(stream)):  # index: the packet's, in decoding order
                if packet.is_keyframe and packet.size:
                    for frame in stream.decode(packet):
                        check_frame(path, index, frame.width, frame.height, limits)
        except av.FFmpegError as error:
            if error.errno == errno.EINVAL:  # AVERROR(EINVAL): over max_pixels (corrupt data is AVERROR_INVALIDDATA)
                raise MediaTooLargeError(
                    path, f"a frame is over the {limits.max_pixels / 1e6:.3g} MP cap (larger than its header states)"
                ) from None


def _refusal(info: VideoInfo, limits: MediaLimits, photo: bool) -> str | None:
    return limits.too_large(info.width, info.height, photo) or (None if photo else limits.too_long(info.frame_count))


def check_media(path: str | os.PathLike, limits: MediaLimits, backend: str = DEFAULT_BACKEND) -> VideoInfo:
    """The media's `probe_video` info, once its headers show it within `limits`; raise
    `MediaTooLargeError` (one line: the size and the cap) before any frame is decoded.

    A photo's size comes from its header. A video's stated size and frame count are checked before
    `probe_video` opens it (FFmpeg's stream analysis may decode a first frame), and its keyframes'
    sizes under FFmpeg's pixel cap (`_scan_frame_sizes`); a frame count the container does not
    state is counted by `probe_video` and checked then (unknown, 0, passes)."""
    path = Path(path)
    photo = is_image(path)
    if photo:
        info = VideoInfo(*_photo_header(path), 0.0, 1)
    else:
        check_header(path, limits)
        _scan_frame_sizes(path, limits)
        info = probe_video(path, backend)
    reason = _refusal(info, limits, photo)
    if reason:
        raise MediaTooLargeError(path, reason)
    return info


def check_header(path: str | os.PathLike, limits: MediaLimits) -> VideoInfo | None:
    """A video's size, frame rate and frame count as its container states them (None where PyAV
    cannot open it), once they are within `limits`: `MediaTooLargeError` otherwise. No frame is decoded."""
    header = _video_header(Path(path))
    reason = header and _refusal(header, limits, photo=False)
    if reason:
        raise MediaTooLargeError(path, reason)
    return header


def check_frame(path: Path, index: int, width: int, height: int, limits: MediaLimits | None) -> None:
    """Refuse a decoded frame over the cap (its header may have stated a smaller size)."""
    reason = limits and limits.too_large(width, height, photo=False)
    if reason:
        raise MediaTooLargeError(path, f"frame {index} is {reason}")


def displayed(image: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame as it is meant to be shown: turned by its display matrix's rotation (degrees
    counterclockwise, as PyAV's `VideoFrame.rotation`), in quarter turns, as OpenCV turns it."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def _iter_pyav(
    path: Path, want: Callable[[int], bool], last: int | None, limits: MediaLimits | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    with open_pyav(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if limits is not None:
            stream.codec_context.options = decoder_cap(limits)
        try:
            for index, frame in enumerate(container.decode(stream)):
                if last is not None and index > last:
                    break
                check_frame(path, index, frame.width, frame.height, limits)
                if want(index):
                    yield index, displayed(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0))
        except av.FFmpegError as error:
            if limits is not None and error.errno == errno.EINVAL:  # FFmpeg's pixel cap refused a frame
                raise MediaTooLargeError(path, f"a frame is over the {limits.max_pixels / 1e6:.3g} MP cap") from None
            raise VideoReadError(path, f"decoding failed ({error})") from error


def _iter_opencv(
    path: Path, want: Callable[[int], bool], last: int | None, limits: MediaLimits | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    capture = _open_opencv(path)
    try:
        index = 0
        while last is None or index <= last:
            if not capture.grab():
                break
            if want(index):
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise VideoReadError(path, f"frame {index} could not be decoded")
                check_frame(path, index, frame.shape[1], frame.shape[0], limits)
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def iter_frames(
    path: str | os.PathLike,
    indices: Iterable[int] | None = None,
    backend: str = DEFAULT_BACKEND,
    every: int = 1,
    limits: MediaLimits | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, RGB frame) in decode order: `indices` when given, else every `every`-th.

    Every frame must be decoded to reach the next one, but only the wanted ones are converted
    to RGB, which is most of the per-frame cost. A still image is a video of one frame. With
    `limits`, a photo is checked by its header before it is decoded, and a video frame over the
    cap raises `MediaTooLargeError` (PyAV: every decoded frame; OpenCV: the frames retrieved).
    """
    path = Path(path)
    if indices is not None:
        wanted = {int(i) for i in indices}
        last = max(wanted, default=-1)
        want = wanted.__contains__
    else:
        last = None

        def want(index: int) -> bool:
            return index % every == 0

    if is_image(path):
        if want(0):
            if limits is not None:
                check_media(path, limits)
            yield 0, _read_image(path)
        return
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    reader = _iter_opencv if backend == "opencv" else _iter_pyav
    yield from reader(path, want, last, limits)


def read_frames(
    path: str | os.PathLike, indices: Iterable[int] | None = None, backend: str = DEFAULT_BACKEND
) -> dict[int, np.ndarray]:
    """All requested frames as {index: RGB frame}; indices past the end are simply absent."""
    return dict(iter_frames(path, indices, backend))
