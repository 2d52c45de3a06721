"""Reading and writing videos with PyAV (FFmpeg), frames as RGB uint8 arrays."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

logger = logging.getLogger(__name__)


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frame_count: int


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise VideoReadError(path, f"not a readable video container ({error})") from error
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "container has no video stream")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and frame count; counts packets when the container does not say."""
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        frame_count = stream.frames
        if frame_count <= 0:
            frame_count = sum(1 for packet in container.demux(stream) if packet.size > 0)
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, fps, frame_count)


def iter_frames(path: str | os.PathLike, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, RGB frame) in decode order, only for `indices` when given.

    Every frame must be decoded to reach the next one, but only the wanted ones are converted
    to RGB, which is most of the per-frame cost.
    """
    wanted = None if indices is None else set(indices)
    last_wanted = None if wanted is None else max(wanted, default=-1)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                if last_wanted is not None and index > last_wanted:
                    break
                if wanted is None or index in wanted:
                    yield index, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise VideoReadError(path, f"decoding failed ({error})") from error


def read_frames(path: str | os.PathLike, indices: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """All requested frames as {index: RGB frame}; indices past the end are simply absent."""
    return dict(iter_frames(path, indices))


class VideoWriter:
    """H.264 (libx264, yuv420p) mp4 writer, written under a temporary name and renamed on close.

    Use as a context manager; on an exception the partial file is removed and nothing is left
    under the final name. The same frames always give the same bytes: x264's macroblock-tree
    rate control is off, because it made the first encode of a process vary from run to run.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        crf: int = 23,
        preset: str = "veryfast",
        threads: int = 0,
    ):
        if width % 2 or height % 2:
            raise ValueError(f"{path}: H.264 with yuv420p needs even sizes, got {width}x{height}")
        self.path = Path(path)
        self._tmp_path = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._container = av.open(str(self._tmp_path), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        options = {"crf": str(crf), "preset": preset, "threads": str(threads), "x264-params": "mbtree=0"}
        self._stream = self._container.add_stream("libx264", rate=rate, options=options)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self.frames_written = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp_path, self.path)

    def abort(self) -> None:
        self._container.close()
        self._tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
