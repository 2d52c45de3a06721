"""Writing H.264 videos with PyAV (FFmpeg), frames as RGB uint8 arrays."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


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
