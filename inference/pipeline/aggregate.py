"""From frame probabilities to one video score.

`confident` is the winning solution's strategy (t = 0.8): with n frame probabilities p,
  - if more than n // 2.5 AND more than 11 are above t: the mean of those (a confident fake);
  - else if more than 0.9 * n are below 0.2: the mean of those (a confident real);
  - else the mean of all.
`per_person` scores each person (faces linked across frames, preprocess/faces/tracks.py) on their own; the
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


def per_person(
    probabilities: Sequence[float], people: Sequence[int], strategy: Callable[[Sequence[float]], float] = confident
) -> float:
    """The highest of the people's scores, each aggregated with `strategy`."""
    p = np.asarray(probabilities, np.float64)
    ids = np.asarray(people)
    return max(strategy(p[ids == person]) for person in np.unique(ids))
