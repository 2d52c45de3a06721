"""MTCNN's answers remembered within a test process, for the modules whose tests run several commands
over the same videos (predict, then detect or timeliness; one model, then another, then both):
each frame goes through MTCNN once, and the other commands get the boxes it got, as they would have
got them again.

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
from collections.abc import Iterator

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


# The answers MTCNN gave in this test process, whichever module asked (tests/conftest.py records them
# from the first test after preprocess.faces.face_detector is imported): the modules that ask for
# the memo are answered from them (the same demo and sample clips go through predict, detect,
# evaluate, the page and the bench in several modules); a module that counts the memo's own work
# sets DETECTION_MEMO_OF_ITS_OWN = True and starts from none. Only a module that asks is answered
# from memory: the detector's own tests, and any module that does not ask, get MTCNN's work afresh.
SHARED_ANSWERS: dict = {}
_asking: dict = {"memo": None}  # the memo of the module that asked, while its tests run


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
        answers = memo["answers"].get(key) if memo is not None else None
        if answers is None:
            if memo is not None:
                memo["counts"]["misses"] += 1
            answers = [_copy(found) for found in detect_batch(self, frames_rgb, scale)]
            (memo["answers"] if memo is not None else SHARED_ANSWERS)[key] = answers
        else:
            memo["counts"]["hits"] += 1
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
