"""DeepfakeBench's own face finder, where the user has it: dlib's HOG detector (upsampled once) on
the RGB frame, the largest face by dlib's width x height, and five of its shape predictor's points
(37, 44, 30, 49, 55) for the alignment (preprocessing/preprocess.py @ v1.0.1, `get_keypts` and
`extract_aligned_face_dlib`). dlib is not a dependency of this project (PyPI: `dlib`, built from
source, or the `dlib-bin` wheel), and the authors' `shape_predictor_81_face_landmarks.dat` is a
file the user places (a DeepfakeBench v1.0.0 release asset); with them, the crops are the authors'.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.cli import InputError
from preprocess.faces.face_detector import FaceDetections

PREDICTOR_FILE = "shape_predictor_81_face_landmarks.dat"  # the authors' (DeepfakeBench v1.0.0 release asset)
DLIB_POINTS = (37, 44, 30, 49, 55)  # left upper eyelid, right upper eyelid, nose tip, inner mouth corners
_local = threading.local()


def _dlib():
    try:
        import dlib
    except ImportError:
        raise InputError(
            "DeepfakeBench's face finder needs dlib, which is not installed (pip install dlib-bin, or dlib)"
        ) from None
    return dlib


@functools.lru_cache(maxsize=2)
def _predictor(path: str):
    if not Path(path).is_file():
        raise InputError(f"{path}: dlib shape predictor file does not exist")
    try:
        return _dlib().shape_predictor(path)
    except RuntimeError as error:
        raise InputError(f"{path}: not a dlib shape predictor ({str(error).strip().splitlines()[0]})") from None


def check_predictor(path: str | Path) -> None:
    """Refuse, before any video is read, a predictor that dlib (or its absence) cannot load."""
    _predictor(str(path))


def _detector():
    """dlib's frontal face detector, one per thread (readers may run in worker threads)."""
    if not hasattr(_local, "detector"):
        _local.detector = _dlib().get_frontal_face_detector()
    return _local.detector


def dlib_detections(frames: Sequence[np.ndarray], predictor_path: str | Path) -> list[FaceDetections]:
    """Per RGB frame, the face DeepfakeBench keeps: the largest of dlib's (box left, top, right,
    bottom as dlib gives them) with its five alignment points; none where dlib finds no face."""
    predictor, detector = _predictor(str(predictor_path)), _detector()
    found = []
    for frame in frames:
        faces = detector(frame, 1)
        if not len(faces):
            found.append(FaceDetections.empty())
            continue
        face = max(faces, key=lambda rect: rect.width() * rect.height())
        shape = predictor(frame, face)
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in DLIB_POINTS], np.float32)
        box = np.array([[face.left(), face.top(), face.right(), face.bottom()]], np.float32)
        found.append(FaceDetections(box, np.ones(1, np.float32), points[None]))
    return found
