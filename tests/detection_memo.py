"""MTCNN's answers remembered within a test run, for the modules whose tests run several commands
over the same videos (predict, then detect or timeliness; one model, then another, then both; the
page, the bench and the parity tests on the same clips): each frame goes through MTCNN once, and the
other commands get the boxes it got, as they would have got them again.

An answer is keyed by everything it depends on: the frames' pixels (their bytes, shape and type),
the scale they are detected at (asked for, or the detector's for their size), and the detector's
settings (thresholds, smallest face, pyramid factor, device, channels-last, a digest of its weights).
Commands that sample other frames, decode them otherwise, or detect at another scale or with other
thresholds miss the memo and are detected afresh, so a comparison of their scores still fails where
the commands differ; only MTCNN's own work on the same input is not repeated (on the CPU it gives
the same boxes for the same input, on any number of threads). Every module's answers are recorded,
so a detector that does not find faces as the project's does (a subclass, a test's stand-in for a
method of it, of its MTCNN or of a network, or a patched step of facenet-pytorch) is neither
recorded nor answered from memory (`_as_recorded`). The detector itself is tested without the
memo's answers (test_face_detector.py, test_seeded_detection.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

logger = logging.getLogger(__name__)


def _frame_key(frame: np.ndarray) -> tuple:
    frame = np.ascontiguousarray(frame)
    return frame.shape, frame.dtype.str, hashlib.blake2b(frame.data, digest_size=16).digest()


# the digest of each MTCNN's weights, with the tensors' identities and versions it was taken at (an
# in-place change of a weight bumps its version): taken again only when they change
_weights_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _weights_digest(mtcnn) -> bytes:
    tensors = [t for net in (mtcnn.pnet, mtcnn.rnet, mtcnn.onet) for t in net.state_dict(keep_vars=True).values()]
    stamp = tuple((id(t), t._version) for t in tensors)
    known = _weights_digests.get(mtcnn)
    if known is None or known[0] != stamp:
        digest = hashlib.blake2b(digest_size=16)
        for tensor in tensors:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        known = _weights_digests[mtcnn] = (stamp, digest.digest())
    return known[1]


def _detector_key(detector) -> tuple:
    import torch

    mtcnn = detector.mtcnn
    return (
        tuple(float(t) for t in mtcnn.thresholds),
        detector.min_face_size,
        mtcnn.min_face_size,
        float(mtcnn.factor),
        mtcnn.select_largest,
        mtcnn.selection_method,
        mtcnn.keep_all,
        str(detector.device),
        mtcnn.pnet.conv1.weight.is_contiguous(memory_format=torch.channels_last),
        _weights_digest(mtcnn),
    )


def _code_in_use() -> tuple:
    """The functions MTCNN's answer comes from besides its settings and weights (what a test could
    patch): each looked up where the detector looks it up."""
    from facenet_pytorch.models import mtcnn as facenet
    from facenet_pytorch.models.utils import detect_face as facenet_steps

    from preprocess.faces import face_detector

    detector = face_detector.FaceDetector.__dict__
    steps = ("batched_nms", "bbreg", "generateBoundingBox", "imresample", "pad", "rerec")
    return (
        detector["_resized"],
        detector["frame_scale"],
        face_detector.planar,
        facenet.MTCNN.detect,
        facenet.detect_face,
        facenet.PNet.forward,
        facenet.RNet.forward,
        facenet.ONet.forward,
        *(getattr(facenet_steps, name) for name in steps),
    )


def _as_recorded(detector) -> bool:
    """Whether `detector` finds faces as the detector did when recording began: the project's own
    class, nothing standing in for a method of it, its MTCNN or its networks, and the same code.
    Any other answer is neither remembered nor given from memory (a test's fake, a changed step)."""
    from facenet_pytorch.models import mtcnn as facenet

    from preprocess.faces.face_detector import FaceDetector

    mtcnn = getattr(detector, "mtcnn", None)
    if type(detector) is not FaceDetector or type(mtcnn) is not facenet.MTCNN:
        return False
    if {"detect_batch", "_resized", "frame_scale"} & vars(detector).keys() or "detect" in vars(mtcnn):
        return False
    networks = ((mtcnn.pnet, facenet.PNet), (mtcnn.rnet, facenet.RNet), (mtcnn.onet, facenet.ONet))
    if any(type(network) is not kind or "forward" in vars(network) for network, kind in networks):
        return False
    return _code_in_use() == _recording["code"]


def _copy(found):
    from preprocess.faces.face_detector import FaceDetections

    return FaceDetections(*(np.array(part, copy=True) for part in (found.boxes, found.probs, found.landmarks)))


# The answers MTCNN gave in this test run, whichever module asked: kept in each process, and under
# pytest-xdist written to `shared_folder` (tests/conftest.py names one for the run) where the other
# workers read them. tests/conftest.py records them from the first test after preprocess.faces.face_detector
# is imported. The modules that ask for the memo are answered from them (the same demo and sample
# clips go through predict, detect, evaluate, the page and the bench in several modules); a module
# that counts the memo's own work sets DETECTION_MEMO_OF_ITS_OWN = True and starts from none. Only a
# module that asks is answered from memory: the detector's own tests, and any module that does not
# ask, get MTCNN's work afresh.
SHARED_ANSWERS: dict = {}
shared_folder: Path | None = None
_asking: dict = {"memo": None}  # the memo of the module that asked, while its tests run
# FaceDetector.detect_batch as the project defines it, and the code it ran on, when recording began
_recording: dict = {"detect_batch": None, "code": None}
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
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own for each writer (two threads of a process may detect the same frames at once)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz", delete=False) as out:
            partial = out.name
            np.savez(out, count=np.array(len(answers)), **arrays)
        os.replace(partial, path)  # whole or not at all, for a worker reading it now
    except OSError as error:  # a memo that cannot be written is only work done again elsewhere
        logger.warning("MTCNN's answers not shared with the other workers: %s", error)
        if partial is not None:
            Path(partial).unlink(missing_ok=True)


def record_detections() -> None:
    """FaceDetector.detect_batch through the memo for the rest of this process (once)."""
    from preprocess.faces.face_detector import FaceDetector

    detect_batch = FaceDetector.__dict__["detect_batch"]
    if getattr(detect_batch, "remembers", False):
        return
    if _recording["detect_batch"] is None:
        _recording["detect_batch"], _recording["code"] = detect_batch, _code_in_use()
    elif detect_batch is not _recording["detect_batch"]:
        return  # a stand-in for MTCNN (a test's fake, set for a whole module): its answers are not MTCNN's

    def remembered(self, frames_rgb, scale=None):
        if not _as_recorded(self):
            return detect_batch(self, frames_rgb, scale)
        # the scale the frames are detected at (they are of one size): asked for, or the detector's
        at = (scale or self.frame_scale(frames_rgb[0].shape[1], frames_rgb[0].shape[0])) if len(frames_rgb) else None
        key = (_detector_key(self), at, tuple(_frame_key(frame) for frame in frames_rgb))
        memo = _asking["memo"]
        own = memo is not None and memo["own"]
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
    module's calls were detected and remembered under "counts" ("misses", "hits"); "own" says whether
    its answers are its own alone (DETECTION_MEMO_OF_ITS_OWN), neither read from nor shared with others."""
    record_detections()
    own = getattr(request.module, "DETECTION_MEMO_OF_ITS_OWN", False)
    memo: dict = {"answers": {} if own else SHARED_ANSWERS, "own": own, "counts": {"misses": 0, "hits": 0}}
    _asking["memo"] = memo
    try:
        yield memo
    finally:
        _asking["memo"] = None
