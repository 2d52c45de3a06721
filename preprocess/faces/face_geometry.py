"""Face geometry from MTCNN's 5 landmarks: a canonical template and the similarity that maps it.

The template is ArcFace's 5 points on a unit square (eyes, nose tip, mouth corners); the face
outline below is drawn on the same square, so any 5 detected points place a whole face: where
the inner face is (the demo world's swaps) and where its hull is (training cutouts, no dlib).
"""

from __future__ import annotations

import numpy as np

TEMPLATE = (
    np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
        np.float64,
    )
    / 112.0
)
# The face outline (jaw from ear to ear, then the brow line) on the template's unit square.
FACE_OUTLINE = np.array(
    [
        [0.10, 0.38], [0.12, 0.58], [0.17, 0.74], [0.26, 0.87], [0.38, 0.96], [0.50, 0.99],
        [0.62, 0.96], [0.74, 0.87], [0.83, 0.74], [0.88, 0.58], [0.90, 0.38],
        [0.80, 0.27], [0.64, 0.24], [0.50, 0.26], [0.36, 0.24], [0.20, 0.27],
    ],
    np.float64,
)  # fmt: skip


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation (Umeyama) taking source to target, 2x3."""
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centered, target_centered = source - source_mean, target - target_mean
    covariance = target_centered.T @ source_centered / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / source_centered.var(0).sum()
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """The face outline polygon (16, 2) placed on an image by its 5 landmarks."""
    matrix = similarity_transform(TEMPLATE, landmarks)
    return FACE_OUTLINE @ matrix[:, :2].T + matrix[:, 2]
