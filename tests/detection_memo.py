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


# The answers, shared by the modules that ask for the memo in one test process (the same demo clips
# go through predict, detect, evaluate and timeliness in several modules); a module that counts
# the memo's own work sets DETECTION_MEMO_OF_ITS_OWN = True and starts from none.
SHARED_ANSWERS: dict = {}


@pytest.fixture(scope="module")
def remembered_detections(request) -> Iterator[dict]:
    """FaceDetector.detect_batch remembered for the module's tests that ask for it (from the first
    that does): the answers under "answers" (those of the other modules that asked, in this
    process), and how many of this module's calls were detected and remembered under "counts"
    ("misses", "hits")."""
    from preprocess.faces.face_detector import FaceDetector

    own = getattr(request.module, "DETECTION_MEMO_OF_ITS_OWN", False)
    memo: dict = {"answers": {} if own else SHARED_ANSWERS, "counts": {"misses": 0, "hits": 0}}
    detect_batch = FaceDetector.detect_batch

    def remembered(self, frames_rgb, scale=None):
        # the scale the frames are detected at (they are of one size): asked for, or the detector's
        at = (scale or self.frame_scale(frames_rgb[0].shape[1], frames_rgb[0].shape[0])) if len(frames_rgb) else None
        key = (_detector_key(self), at, tuple(_frame_key(frame) for frame in frames_rgb))
        answers = memo["answers"].get(key)
        if answers is None:
            memo["counts"]["misses"] += 1
            answers = detect_batch(self, frames_rgb, scale)
            memo["answers"][key] = [_copy(found) for found in answers]
        else:
            memo["counts"]["hits"] += 1
        return [_copy(found) for found in answers]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FaceDetector, "detect_batch", remembered)
        yield memo
