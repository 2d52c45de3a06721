"""The next video's sampled frames, decoded in the background while the current one is detected and
classified (predict on a CPU, inference/pipeline/reader.py). FFmpeg decodes without Python's lock, on CPU
time that the detector and the classifiers leave idle: a whole `--fast` command on ten 1080p videos
took 17.9-19.1 s instead of 20.1-22.0 on the 2-core AMD EPYC of docs/speed.md.

What is held ahead is bounded: a video is decoded ahead only where `frames` frames at the size its
header states fit `AHEAD_BYTES`, and under a pixel cap that keeps them there (`ahead_limits`): a
stream whose frames grow past its header is refused by the cap and decoded in turn instead. The
file's identity (size, time, first MiB's hash) is taken before its frames are decoded, so that the
row records the file that was scored, however long the frames wait.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from common.media_limits import MediaLimits
from common.video_io import MediaTooLargeError, check_header, is_image
from inference.pipeline.faces import SampledFrames, sample_frames
from inference.pipeline.file_identity import video_identity

AHEAD_BYTES = 256 * 2**20  # one video's sampled frames held ahead: 32 frames of 1920x1080 take 199 MB


def fits_ahead(path: Path, frames: int, limits: MediaLimits, budget: int = AHEAD_BYTES) -> bool:
    """Whether `frames` RGB frames of the video at `path`, at the size its header states, take at
    most `budget` bytes. A photo, a file that cannot be opened or one over `limits` is read in
    turn instead (where its error, if any, is raised)."""
    if is_image(path):
        return False
    try:
        header = check_header(path, limits)
    except Exception:  # refused or unreadable: the reader in turn says why
        return False
    return header is not None and 0 < frames * header.width * header.height * 3 <= budget


def ahead_limits(limits: MediaLimits, frames: int, budget: int = AHEAD_BYTES) -> MediaLimits:
    """`limits` with a pixel cap under which `frames` RGB frames take at most `budget` bytes."""
    return replace(limits, max_pixels=min(limits.max_pixels, budget // (3 * max(frames, 1))))


@dataclass
class DecodedAhead:
    identity: dict | None  # the file's, taken before decoding (None: it was gone)
    sampled: SampledFrames | None  # None: over the pixel cap of `ahead_limits`, to be decoded in turn


def decode(path: Path, frames: int, backend: str, limits: MediaLimits, sparse: bool) -> DecodedAhead:
    """`sample_frames` of `path` under `ahead_limits`, with the file's identity before it; an error
    other than the cap's is the video's, raised when its frames are asked for."""
    identity = video_identity(path)
    try:
        capped = ahead_limits(limits, frames, AHEAD_BYTES)
        return DecodedAhead(identity, sample_frames(path, frames, backend, capped, sparse))
    except MediaTooLargeError:
        return DecodedAhead(identity, None)


class InOrder:
    """Calls run one after another in one daemon thread: unlike a ThreadPoolExecutor's thread, which
    the interpreter joins at exit, it never keeps an interrupted run (Ctrl-C, a full disk) waiting
    for a decode in progress."""

    def __init__(self, name: str = "decode-ahead"):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        self._tasks.put((future, function, args))
        if self._thread.ident is None:  # started with the first call
            self._thread.start()
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            self._run(*task)
            task = None  # not holding the last result (a video's frames) while waiting for the next task

    @staticmethod
    def _run(future: Future, function, args) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(function(*args))
        except BaseException as error:  # the caller's, raised by future.result()
            future.set_exception(error)

    def close(self, wait: bool = True) -> None:
        """Cancel what has not started; with `wait`, wait for what has (a run that ends normally
        leaves no thread behind)."""
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task[0].cancel()
        if self._thread.ident is None:  # never started
            return
        self._tasks.put(None)
        if wait:
            self._thread.join()
