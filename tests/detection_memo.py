"""MTCNN's answers remembered within a test run, for the modules whose tests run several commands
over the same videos (predict, then detect or timeliness; one model, then another, then both; the
page, the bench and the parity tests on the same clips): each frame goes through MTCNN once, and the
other commands get the boxes it got, as they would have got them again.

An answer is keyed by everything it depends on: the frames' pixels (their bytes, shape and type),
the scale they are detected at (asked for, or the detector's for their size), and the detector's
settings (thresholds, smallest face, device, channels-last). Commands that sample other frames, decode them
otherwise, or detect at another scale or with other thresholds miss the memo and are detected
afresh, so a comparison of their scores still fails where the commands differ; only MTCNN's own
work on the same input is not repeated (on the CPU it gives the same boxes for the same input).
The detector itself is tested without the memo (test_face_detector.py, test_seeded_detection.py).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest


def _frame_key(frame: np.ndarray) -> tuple:
    frame = np.ascontiguousarray(frame)
    return frame.shape, frame.dtype.str, hashlib.blake2b(frame.data, digest_size=16).digest()


def _detector_key(detector) -> tuple:
    import torch

    mtcnn = detector.mtcnn
    return (
        tuple(float(t) for t in mtcnn.thresholds),
        detector.min_face_size,
        str(detector.device),
        mtcnn.pnet.conv1.weight.is_contiguous(memory_format=torch.channels_last),
    )


def _copy(found):
    from preprocess.faces.face_detector import FaceDetections

    return FaceDetections(*(np.array(part, copy=True) for part in (found.boxes, found.probs, found.landmarks)))


# The answers MTCNN gave in this test run, whichever module asked: kept in each process, and written
# to `shared_folder` (tests/conftest.py names one for the run) where the other pytest-xdist workers
# read them. tests/conftest.py records them from the first test after preprocess.faces.face_detector
# is imported. The modules that ask for the memo are answered from them (the same demo and sample
# clips go through predict, detect, evaluate, the page and the bench in several modules); a module
# that counts the memo's own work sets DETECTION_MEMO_OF_ITS_OWN = True and starts from none. Only a
# module that asks is answered from memory: the detector's own tests, and any module that does not
# ask, get MTCNN's work afresh.
SHARED_ANSWERS: dict = {}
shared_folder: Path | None = None
_asking: dict = {"memo": None}  # the memo of the module that asked, while its tests run
_PARTS = ("boxes", "probs", "landmarks")


def _answers_file(key: tuple) -> Path | None:
    if shared_folder is None:
        return None
    return shared_folder / f"{hashlib.blake2b(repr(key).encode(), digest_size=20).hexdigest()}.npz"


def _read_answers(key: tuple) -> list | None:
    from preprocess.faces.face_detector import FaceDetections

    path = _answers_file(key)
    if path is None or not path.exists():
        return None
    with np.load(path) as stored:
        return [FaceDetections(*(stored[f"{i}_{part}"] for part in _PARTS)) for i in range(int(stored["count"]))]


def _write_answers(key: tuple, answers: list) -> None:
    path = _answers_file(key)
    if path is None:
        return
    arrays = {f"{i}_{part}": getattr(found, part) for i, found in enumerate(answers) for part in _PARTS}
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own for each writer (two threads of a process may detect the same frames at once)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz", delete=False) as partial:
        np.savez(partial, count=np.array(len(answers)), **arrays)
    os.replace(partial.name, path)  # whole or not at all, for a worker reading it now


def record_detections() -> None:
    """FaceDetector.detect_batch through the memo for the rest of this process (once)."""
    from preprocess.faces.face_detector import FaceDetector

    detect_batch = FaceDetector.detect_batch
    if getattr(detect_batch, "remembers", False):
        return

    def remembered(self, frames_rgb, scale=None):
        # the scale the frames are detected at (they are of one size): asked for, or the detector's
        at = (scale or self.frame_scale(frames_rgb[0].shape[1], frames_rgb[0].shape[0])) if len(frames_rgb) else None
        key = (_detector_key(self), at, tuple(_frame_key(frame) for frame in frames_rgb))
        memo = _asking["memo"]
        own = memo is not None and memo["answers"] is not SHARED_ANSWERS
        answers = None
        if memo is not None:
            answers = memo["answers"].get(key)
            if answers is None and not own:
                answers = _read_answers(key)
        if answers is None:
            if memo is not None:
                memo["counts"]["misses"] += 1
            answers = [_copy(found) for found in detect_batch(self, frames_rgb, scale)]
            if not own:
                _write_answers(key, answers)
        else:
            memo["counts"]["hits"] += 1
        (memo["answers"] if own else SHARED_ANSWERS)[key] = answers
        return [_copy(found) for found in answers]

    remembered.remembers = True
    FaceDetector.detect_batch = remembered


@pytest.fixture(scope="module")
def remembered_detections(request) -> Iterator[dict]:
    """MTCNN's answers given from memory to the module's tests that ask for it (from the first that
    does): the answers under "answers" (those given in this process so far), and how many of this
    module's calls were detected and remembered under "counts" ("misses", "hits")."""
    record_detections()
    own = getattr(request.module, "DETECTION_MEMO_OF_ITS_OWN", False)
    memo: dict = {"answers": {} if own else SHARED_ANSWERS, "counts": {"misses": 0, "hits": 0}}
    _asking["memo"] = memo
    try:
        yield memo
    finally:
        _asking["memo"] = None
