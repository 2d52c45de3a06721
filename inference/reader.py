"""Faces of the videos to score, read ahead: decode and detect in worker threads (one MTCNN each)
while the classifiers run, or, with no workers, one video after another (on a CPU the threads
would compete with the classifiers for the same cores), the next video's sampled frames decoded
in one background thread meanwhile (FFmpeg works without Python's lock, on CPU time the detector
and the classifiers leave idle: a tenth less time a 1080p video in fast mode on 2 cores), where
they take at most `AHEAD_BYTES`. With --perturb, each video's sampled frames are distorted before
detection (inference/frame_perturbation.py), seeded by its path under --test-dir."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from inference.clips import extract_clips
from inference.faces import VideoFaces, extract_faces, inference_detector, sample_frames
from inference.frame_perturbation import frame_perturbation
from inference.model_options import media_limits
from preprocess.cli import InputError
from preprocess.face_detector import FaceDetector
from preprocess.video_io import MediaLimits, check_header, is_image

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


class FaceReader:
    """Decode and detect ahead of classification in `workers` threads (one MTCNN each), or, with no
    workers, in turn with it."""

    def __init__(self, args, device: torch.device, workers: int, clips: set[tuple[int, int]] = frozenset()):
        self.args, self.device, self.workers, self.clips = args, device, workers, clips
        self.perturbation = frame_perturbation(args)
        if self.perturbation is not None and clips:
            raise InputError(
                f"--perturb {args.perturb}: distorts the frames of frame models only, and a temporal model "
                "(clips) is among the models: leave it out, or score without --perturb"
            )
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="faces")

    def _detector(self) -> FaceDetector:
        if not hasattr(self._local, "detector"):
            self._local.detector = inference_detector(self.args.detector_scale, self.device, self.args.fast)
        return self._local.detector

    def _read(self, path: Path, decoded_ahead: Future | None = None) -> VideoFaces:
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
            perturbation=self.perturbation,
            video_id=self._video_id(path),
            sparse=self.args.fast,
            decoded_ahead=decoded_ahead,
        )
        if self.clips:
            for clip in sorted(self.clips):
                faces.clips[clip] = extract_clips(
                    path, self._detector(), clip, self.args.frames, recall, self.args.video_backend, limits
                )
        return faces

    def _video_id(self, path: Path) -> str:
        """The video's filename under --test-dir (what seeds its perturbation), else its name."""
        test_dir = getattr(self.args, "test_dir", None)
        try:
            return Path(path).relative_to(test_dir).as_posix() if test_dir is not None else Path(path).name
        except ValueError:
            return Path(path).name

    def read_all(self, paths: list[Path]):
        """Yield (path, future) in order, keeping a few videos in flight."""
        if self.workers == 0:
            paths = list(paths)
            ahead = self._decode_ahead(paths[0]) if paths else None
            for position, path in enumerate(paths):
                decoded, ahead = ahead, self._decode_ahead(paths[position + 1]) if position + 1 < len(paths) else None
                future: Future = Future()
                try:
                    future.set_result(self._read(path, decoded))
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

    def _decode_ahead(self, path: Path) -> Future | None:
        """`path`'s sampled frames being decoded in the background thread, or None where they are
        to be decoded in turn (`fits_ahead`)."""
        limits = media_limits(self.args)
        if not fits_ahead(path, self.args.frames, limits):
            return None
        return self._pool.submit(sample_frames, path, self.args.frames, self.args.video_backend, limits, self.args.fast)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
