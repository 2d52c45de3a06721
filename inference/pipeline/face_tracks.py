"""Boxes carried between the sampled frames of a video: interpolated across frames where MTCNN
found none (the recall boost), and, in fast mode, used to seed detection so that most frames need
no image pyramid.

Seeded detection (`detect_seeded_frames`): every `every`-th sampled frame and the last (the key
frames) get MTCNN's full pyramid, as exact mode runs it; each frame between two key frames gets
only MTCNN's second and third networks, on the boxes of both key frames and on their
interpolation at its time (the faces seen before and after it, wherever they have moved to), as
if the pyramid's first network had proposed them, cut from the frame at detection size exactly as
exact mode's MTCNN cuts its candidates. A frame where this finds fewer faces than both key frames
saw (a face lost: it moved too far, turned away, or the seeds missed it), or none at all, gets
the full pyramid after all. A face that appears only between two key frames is missed: fast
mode's price.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from preprocess.faces.tracks import box_iou


def interpolated_boxes(
    frame_indices: list[int], boxes: list[list], max_gap: int = 3, min_iou: float = 0.2
) -> dict[int, list[list[float]]]:
    """Boxes for frames without any, where a person is seen in the nearest frames before and after
    (at most `max_gap` sampled frames apart, boxes overlapping by `min_iou`, each box paired with
    one box at most: the pairing of most overlap): linear in the frame index between the two boxes.
    {position in frame_indices: boxes}."""
    found: dict[int, list[list[float]]] = {}
    with_faces = [position for position, frame_boxes in enumerate(boxes) if len(frame_boxes)]
    for before, after in zip(with_faces, with_faces[1:], strict=False):
        if after - before < 2 or after - before > max_gap + 1:
            continue
        overlaps = np.array([[box_iou(first, last) for last in boxes[after]] for first in boxes[before]])
        overlaps[~(overlaps >= min_iou)] = 0.0  # pairs too far apart (or NaN) count for nothing in the pairing
        pairs = [
            (np.asarray(boxes[before][i], float), np.asarray(boxes[after][j], float))
            for i, j in zip(*linear_sum_assignment(overlaps, maximize=True), strict=True)
            if overlaps[i, j] >= min_iou
        ]
        span = frame_indices[after] - frame_indices[before]
        for position in range(before + 1, after):
            weight = (frame_indices[position] - frame_indices[before]) / span
            found[position] = [((1 - weight) * first + weight * last).tolist() for first, last in pairs]
    return found


def key_positions(count: int, every: int) -> list[int]:
    """Positions of the key frames among `count` sampled frames: every `every`-th and the last."""
    return sorted({*range(0, count, max(every, 1)), count - 1}) if count else []


def seeds(frame_indices: Sequence[int], keys: Sequence[int], key_boxes: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Seed boxes (N, 4) of each frame between key frames: the boxes of the key frames on either
    side and their pairwise interpolation at the frame's index (`interpolated_boxes`, with no
    limit on the gap)."""
    found: dict[int, np.ndarray] = {}
    for before, after in zip(keys, keys[1:], strict=False):
        first, last = np.asarray(key_boxes[before]).reshape(-1, 4), np.asarray(key_boxes[after]).reshape(-1, 4)
        span = [frame_indices[before], *frame_indices[before + 1 : after], frame_indices[after]]
        between = interpolated_boxes(
            span, [first.tolist(), *[[] for _ in range(after - before - 1)], last.tolist()], max_gap=len(span)
        )
        for position in range(before + 1, after):
            middle = np.asarray(between.get(position - before, []), np.float32).reshape(-1, 4)
            found[position] = jittered(np.concatenate([first, last, middle]))
    return found


SEED_SCALES = (0.85, 1.0, 1.2)  # each seed also at these sizes about its centre, for faces that moved in depth


def jittered(boxes: np.ndarray, scales=SEED_SCALES) -> np.ndarray:
    """Each box (N, 4) at each of `scales` about its centre."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2
    return np.concatenate([np.concatenate([centre - half * s, centre + half * s], axis=1) for s in scales]).astype(
        np.float32
    )


def face_lost(found: int, before: int, after: int) -> bool:
    """Whether a seeded frame needs the full pyramid: it found no face, or fewer than both key frames saw."""
    return found == 0 or found < min(before, after)


def full_pyramid(detector, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Boxes of each frame by MTCNN as exact mode runs it (facenet-pytorch, each frame alone): the
    key frames' boxes are exact mode's, and the seeded frames start from them."""
    return [found.boxes for found in detector.detect_each(frames)]


def detect_seeded_frames(
    detector, frames: list[np.ndarray], frame_indices: Sequence[int], every: int
) -> list[tuple[np.ndarray, str]]:
    """Boxes (N, 4) of each frame of one video, in the frames' pixels, by seeded detection (above),
    and how they were found: "detected" (the full pyramid: key frames and frames that lost a face)
    or "seeded". `detector` is a FaceDetector with `detect_each` (the full pyramid) and
    `detect_seeded`."""
    keys = key_positions(len(frames), every)
    found: dict[int, tuple[np.ndarray, str]] = {
        k: (boxes, "detected") for k, boxes in zip(keys, full_pyramid(detector, [frames[k] for k in keys]), strict=True)
    }
    planned = seeds(frame_indices, keys, {k: boxes for k, (boxes, _) in found.items()})
    positions = sorted(planned)
    lost = []
    seeded_found = (
        detector.detect_seeded([frames[p] for p in positions], [planned[p] for p in positions]) if positions else []
    )
    for position, seeded in zip(positions, seeded_found, strict=True):
        before = max(k for k in keys if k < position)
        after = min(k for k in keys if k > position)
        if face_lost(len(seeded), len(found[before][0]), len(found[after][0])):
            lost.append(position)
        else:
            found[position] = (seeded.boxes, "seeded")
    if lost:
        for position, boxes in zip(lost, full_pyramid(detector, [frames[p] for p in lost]), strict=True):
            found[position] = (boxes, "detected")
    return [found[position] for position in range(len(frames))]
