"""Faces of the videos to score, read ahead: decode and detect in worker threads (one MTCNN each)
while the classifiers run, or, with no workers, one video after another (on a CPU the threads
would compete with the classifiers for the same cores)."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from inference.clips import extract_clips
from inference.faces import VideoFaces, extract_faces, inference_detector
from inference.model_options import media_limits
from preprocess.face_detector import FaceDetector


class FaceReader:
    """Decode and detect ahead of classification in `workers` threads (one MTCNN each), or, with no
    workers, in turn with it."""

    def __init__(self, args, device: torch.device, workers: int, clips: set[tuple[int, int]] = frozenset()):
        self.args, self.device, self.workers, self.clips = args, device, workers, clips
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="faces")

    def _detector(self) -> FaceDetector:
        if not hasattr(self._local, "detector"):
            self._local.detector = inference_detector(self.args.detector_scale, self.device, self.args.fast)
        return self._local.detector

    def _read(self, path: Path) -> VideoFaces:
        recall = not self.args.no_recall_boost
        limits = media_limits(self.args)
        faces = extract_faces(
            path,
            self._detector(),
            self.args.frames,
            self.args.video_backend,
            recall=recall,
            faces_are_cropped=self.args.faces_are_cropped,
            limits=limits,
        )
        if self.clips:
            for clip in sorted(self.clips):
                faces.clips[clip] = extract_clips(
                    path, self._detector(), clip, self.args.frames, recall, self.args.video_backend, limits
                )
        return faces

    def read_all(self, paths: list[Path]):
        """Yield (path, future) in order, keeping a few videos in flight."""
        if self.workers == 0:
            for path in paths:
                future: Future = Future()
                try:
                    future.set_result(self._read(path))
                except Exception as error:  # raised again by future.result(), where every failure is recorded
                    future.set_exception(error)
                yield path, future
            return
        pending: deque[tuple[Path, Future]] = deque()
        remaining = iter(paths)
        for path in remaining:
            pending.append((path, self._pool.submit(self._read, path)))
            if len(pending) > max(2, 2 * self.workers):
                break
        while pending:
            yield pending.popleft()
            next_path = next(remaining, None)
            if next_path is not None:
                pending.append((next_path, self._pool.submit(self._read, next_path)))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
