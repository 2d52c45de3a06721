"""From frame probabilities to one video score.

`confident` is the winning solution's strategy (t = 0.8): with n frame probabilities p,
  - if more than n // 2.5 AND more than 11 are above t: the mean of those (a confident fake);
  - else if more than 0.9 * n are below 0.2: the mean of those (a confident real);
  - else the mean of all.
`per_person` links faces across frames by box overlap and scores each person on their own; the
video gets the most fake person's score, so one swapped face among several real ones counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

FAKE_THRESHOLD = 0.8
MIN_CONFIDENT_FAKES = 11
REAL_THRESHOLD = 0.2


def confident(probabilities: Sequence[float], threshold: float = FAKE_THRESHOLD) -> float:
    p = np.asarray(probabilities, np.float64)
    size = len(p)
    fakes = np.count_nonzero(p > threshold)
    if fakes > size // 2.5 and fakes > MIN_CONFIDENT_FAKES:
        return float(np.mean(p[p > threshold]))
    if np.count_nonzero(p < REAL_THRESHOLD) > 0.9 * size:
        return float(np.mean(p[p < REAL_THRESHOLD]))
    return float(np.mean(p))


def mean(probabilities: Sequence[float]) -> float:
    return float(np.mean(probabilities))


def median(probabilities: Sequence[float]) -> float:
    return float(np.median(probabilities))


STRATEGIES: dict[str, Callable[[Sequence[float]], float]] = {"confident": confident, "mean": mean, "median": median}


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


def per_person(
    probabilities: Sequence[float], people: Sequence[int], strategy: Callable[[Sequence[float]], float] = confident
) -> float:
    """The highest of the people's scores, each aggregated with `strategy`."""
    p = np.asarray(probabilities, np.float64)
    ids = np.asarray(people)
    return max(strategy(p[ids == person]) for person in np.unique(ids))
