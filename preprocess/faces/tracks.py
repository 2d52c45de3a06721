"""Face tracks: the faces of consecutive frames linked into people by box overlap.

The same linking serves inference (`--per-person`, detect's people) and preprocessing, where
each box source's boxes become tracks and folds.csv says which track each crop belongs to (a
fake cut at its original's boxes shares its tracks):

    tracks/{video}.json   {"0": [0, 1], "10": [0, 1], "20": [1], ...}   person of each face, per frame
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    intersection = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def link_people(frames: list[list[Sequence[float]]], min_iou: float = 0.3) -> list[list[int]]:
    """Person index of every face, frame by frame: a face continues the person whose last box it
    overlaps most (IoU >= min_iou, each person once per frame), else starts a new person."""
    last_box: list[Sequence[float]] = []
    assignment: list[list[int]] = []
    for boxes in frames:
        taken: set[int] = set()
        people = []
        for box in boxes:
            overlaps = [(box_iou(box, last), person) for person, last in enumerate(last_box) if person not in taken]
            best_iou, best = max(overlaps, default=(0.0, -1))
            if best_iou >= min_iou:
                last_box[best] = box
            else:
                best = len(last_box)
                last_box.append(box)
            taken.add(best)
            people.append(best)
        assignment.append(people)
    return assignment


def tracks_path(root: Path, video: str) -> Path:
    return Path(root) / "tracks" / f"{video}.json"


def frame_tracks(boxes: dict[int, list | None]) -> dict[int, list[int]]:
    """{frame: track of each of its faces} of a video's boxes ({frame: boxes or None}), in frame order."""
    frames = sorted(boxes)
    people = link_people([boxes[frame] or [] for frame in frames])
    return {frame: persons for frame, persons in zip(frames, people, strict=True) if persons}
