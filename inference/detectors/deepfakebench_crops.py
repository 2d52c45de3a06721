"""DeepfakeBench's face crop (SCLBD/DeepfakeBench v1.0.1, preprocessing/preprocess.py, `img_align_crop`),
as pure functions: five landmarks aligned by a similarity transform (Umeyama's least squares, by
scikit-image, as the authors call it) to the ArcFace template scaled to 256 x 256 with a margin of
1.3, the frame warped by `cv2.warpAffine` (bilinear, black outside the frame) to 256 x 256.

The authors' landmarks are dlib's 81-point model's points 37 and 44 (upper eyelids), 30 (nose tip),
49 and 55 (inside the mouth corners); this project gives MTCNN's five (eye centres, nose tip, mouth
corners) to the same template, estimator and warp, so a crop sits a little differently on the face
than the authors' (see inference/detectors/deepfakebench.py).
"""

from __future__ import annotations

import numpy as np

CROP_SIZE = 256  # the authors' `res` (extract_aligned_face_dlib) and their models' `resolution`
CROP_SCALE = 1.3  # `img_align_crop`'s scale: the template shrunk to leave 0.15 of margin each side

# InsightFace's ArcFace template for 112 x 96 crops (left eye, right eye, nose, mouth left, mouth right)
ARCFACE_112X96 = (
    (30.2946, 51.6963),
    (65.5318, 51.5014),
    (48.0252, 71.7366),
    (33.5493, 92.3655),
    (62.7299, 92.2041),
)


def template(size: int = CROP_SIZE, scale: float = CROP_SCALE) -> np.ndarray:
    """The five target points of a `size` x `size` crop, in the authors' float32 arithmetic: the
    template widened to 112 x 112 (8 px on x), scaled to `size`, moved by the margin and shrunk back."""
    points = np.array(ARCFACE_112X96, dtype=np.float32)
    points[:, 0] += 8.0
    points[:, 0] = points[:, 0] * size / 112
    points[:, 1] = points[:, 1] * size / 112
    margin = size * (scale - 1) / 2.0
    points += margin
    points *= size / (size + 2 * margin)
    return points


TEMPLATE = template()


def alignment_matrix(landmarks: np.ndarray, target: np.ndarray = TEMPLATE) -> np.ndarray | None:
    """The 2 x 3 similarity (float64) taking the five `landmarks` (x, y) onto `target`, estimated by
    scikit-image's SimilarityTransform from float32 points as the authors do; None where the points
    are degenerate (the estimate fails) or not finite."""
    from skimage.transform import SimilarityTransform

    source = np.asarray(landmarks).astype(np.float32)
    if source.shape != (5, 2) or not np.isfinite(source).all():
        return None
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26: `estimate` is deprecated
        transform = SimilarityTransform.from_estimate(source, target)
        if not transform:
            return None
    else:
        transform = SimilarityTransform()
        if not transform.estimate(source, target):
            return None
    matrix = transform.params[0:2, :]
    return matrix if np.isfinite(matrix).all() else None


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray | None:
    """The `size` x `size` crop of `frame` (uint8 RGB) aligned on `landmarks`, as the authors warp
    it (their same-size `cv2.resize` after the warp copies the image); None where no transform can
    be estimated."""
    import cv2

    target = TEMPLATE if size == CROP_SIZE else template(size)
    matrix = alignment_matrix(landmarks, target)
    if matrix is None:
        return None
    return cv2.warpAffine(frame, matrix, (size, size))


def largest_face(boxes: np.ndarray) -> int | None:
    """The index of the largest box (x1, y1, x2, y2) by area, the first on ties (dlib's `max` by
    width x height in the authors' code); None without a box."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return None
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
