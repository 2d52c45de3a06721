"""Faces of the videos to score, read ahead: decode and detect in worker threads (one MTCNN each)
while the classifiers run, or, with no workers, one video after another (on a CPU the threads
would compete with the classifiers for the same cores), the next video's sampled frames decoded
in the background meanwhile (inference/pipeline/decode_ahead.py). With --perturb, each video's sampled
frames are distorted before detection (inference/distortions/frame_perturbation.py), seeded by its path under
--test-dir."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from common.cli import InputError
from inference.distortions.frame_perturbation import frame_perturbation
from inference.models.model_options import media_limits
from inference.pipeline import decode_ahead
from inference.pipeline.clips import extract_clips
from inference.pipeline.detector import PROJECT_FACES, FaceSource, read_views
from inference.pipeline.faces import VideoFaces, extract_faces, inference_detector
from inference.pipeline.file_identity import video_identity
from preprocess.faces.face_detector import FaceDetector


class FaceReader:
    """Decode and detect ahead of classification in `workers` threads (one MTCNN each), or, with no
    workers, in turn with it."""

    def __init__(
        self,
        args,
        device: torch.device,
        workers: int,
        clips: set[tuple[int, int]] = frozenset(),
        sources: Sequence[FaceSource] = (PROJECT_FACES,),
    ):
        """`clips`: the clip windows to read with the faces; `sources` (inference/pipeline/detector.py):
        the first is each video's own read, the others its views."""
        self.args, self.device, self.workers, self.clips = args, device, workers, clips
        self.sources = list(sources) or [PROJECT_FACES]
        self.perturbation = frame_perturbation(args)
        if self.perturbation is not None and clips:
            raise InputError(
                f"--perturb {args.perturb}: distorts the frames of frame models only, and a temporal model "
                "(clips) is among the models: leave it out, or score without --perturb"
            )
        if self.perturbation is not None and self.sources != [PROJECT_FACES]:
            raise InputError(
                f"--perturb {args.perturb}: distorts the project's read of the frames only, and a detector reads "
                f"its own ({', '.join(s.name for s in self.sources if s != PROJECT_FACES)}): leave it out, or "
                "score without --perturb"
            )
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="faces") if workers else None
        self._ahead = decode_ahead.InOrder() if not workers else None

    def _detector(self) -> FaceDetector:
        if not hasattr(self._local, "detector"):
            self._local.detector = inference_detector(self.args.detector_scale, self.device, self.args.fast)
        return self._local.detector

    def _read(self, path: Path, ahead: Future | None = None) -> VideoFaces:
        """The faces of `path` as each source reads them: the project's (the first source, where it
        is one) from its frames decoded `ahead` where they were (and fit the cap), else decoded now;
        with the file's identity as it was before decoding."""
        first, *others = self.sources
        if first == PROJECT_FACES:
            faces = self._read_project(path, ahead)
        else:
            identity = video_identity(path)
            faces = first.read(path, self._detector(), self.args)
            faces.identity = identity
        read_views(faces, others, path, self._detector(), self.args)
        return faces

    def _read_project(self, path: Path, ahead: Future | None) -> VideoFaces:
        recall = not self.args.no_recall_boost
        limits = media_limits(self.args)
        started = time.perf_counter()
        decoded = ahead.result() if ahead is not None else None  # the video's error, if decoding failed
        waited = time.perf_counter() - started
        if decoded is None or decoded.sampled is None:
            decoded = decode_ahead.DecodedAhead(video_identity(path), None)
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
            sampled=decoded.sampled,
        )
        faces.identity = decoded.identity
        if decoded.sampled is not None:
            faces.seconds["decode"] = waited  # the rest of its decoding overlapped the video before
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
                this, ahead = ahead, self._decode_ahead(paths[position + 1]) if position + 1 < len(paths) else None
                future: Future = Future()
                try:
                    future.set_result(self._read(path, this))
                except Exception as error:  # raised again by future.result(), where every failure is recorded
                    future.set_exception(error)
                this = None  # this video's frames are freed while it is classified; only the next one's are held
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
        """`path`'s sampled frames being decoded in the background (`decode_ahead.decode`), or None
        where they are to be decoded in turn (`decode_ahead.fits_ahead`, or a first source other
        than the project's)."""
        limits = media_limits(self.args)
        if self.sources[0] != PROJECT_FACES or not decode_ahead.fits_ahead(path, self.args.frames, limits):
            return None
        args = (path, self.args.frames, self.args.video_backend, limits, self.args.fast)
        return self._ahead.submit(decode_ahead.decode, *args)

    def close(self, wait: bool = True) -> None:
        """Stop reading; `wait=False` (an interrupted run) does not wait for work in progress."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
        if self._ahead is not None:
            self._ahead.close(wait)
