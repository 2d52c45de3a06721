"""Frame-to-video aggregation: the confident strategy's branches and boundaries, and per person."""

from __future__ import annotations

import numpy as np
import pytest

from inference.pipeline.aggregate import confident, median, per_person
from preprocess.faces.tracks import link_people


def test_confident_fake_branch_averages_only_the_confident_frames():
    p = [0.9] * 13 + [0.5] * 19  # n = 32: 13 > 32 // 2.5 = 12 and 13 > 11
    assert confident(p) == pytest.approx(0.9)


def test_exactly_eleven_confident_frames_is_not_enough():
    p = [0.95] * 11 + [0.3] * 9  # n = 20: 11 > 20 // 2.5 = 8, but 11 is not > 11
    assert confident(p) == pytest.approx(np.mean(p))
    assert confident([0.95] * 12 + [0.3] * 8) == pytest.approx(0.95)


def test_exactly_n_over_2_5_confident_frames_is_not_enough():
    p = [0.9] * 16 + [0.5] * 24  # n = 40: 40 // 2.5 = 16, and 16 is not > 16
    assert confident(p) == pytest.approx(np.mean(p))
    assert confident([0.9] * 17 + [0.5] * 23) == pytest.approx(0.9)


def test_threshold_is_strict():
    p = [0.8] * 20 + [0.1] * 12  # 0.8 is not > 0.8
    assert confident(p) == pytest.approx(np.mean(p))


def test_confident_real_branch_needs_more_than_90_percent_low_frames():
    p = [0.1] * 19 + [0.6]  # 19 > 0.9 * 20 = 18
    assert confident(p) == pytest.approx(0.1)
    boundary = [0.1] * 18 + [0.6, 0.6]  # 18 is not > 18
    assert confident(boundary) == pytest.approx(np.mean(boundary))
    assert confident([0.2] * 20) == pytest.approx(0.2), "0.2 is not < 0.2: the mean branch"


def test_the_fake_branch_wins_over_the_real_branch():
    assert confident([0.99] * 12) == pytest.approx(0.99)


def test_median_and_single_frame():
    assert median([0.1, 0.9, 0.3]) == 0.3 and confident([0.42]) == pytest.approx(0.42)


def test_people_are_linked_by_overlap_and_the_most_fake_person_counts():
    left, right = [0, 0, 10, 10], [50, 0, 60, 10]
    frames = [[left, right], [right, [1, 1, 11, 11]], [[2, 0, 12, 10]], [[80, 80, 90, 90]]]
    people = link_people(frames)
    assert people == [[0, 1], [1, 0], [0], [2]]
    probabilities = [0.1, 0.9, 0.9, 0.1, 0.1, 0.5]
    flat = [person for frame in people for person in frame]
    assert per_person(probabilities, flat, np.mean) == pytest.approx(0.9), "pooled, every face gives 0.35"
    # person 1's faces are 0.95 and 0.45: their mean, not the single most fake face, is the video's
    assert per_person([0.1, 0.95, 0.45, 0.1, 0.1, 0.5], flat, np.mean) == pytest.approx(0.7)
    # person ids need not be 0..k-1, and the strategy sees each person's faces alone
    faces, people = [0.9] * 13 + [0.1] * 37, [7] * 13 + [3] * 37
    assert per_person(faces, people) == pytest.approx(0.9), "person 7 alone: 13 confident fakes of 13"
    assert confident(faces) == pytest.approx(0.308), "pooled, 13 of 50 is not enough: the mean of all"
