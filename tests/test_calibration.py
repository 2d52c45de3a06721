"""Calibration (temperature, Platt) and conformal false-positive-rate operating points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import norm

from inference.calibration.methods import (
    PLATT_SLOPE_BOUNDS,
    TEMPERATURE_BOUNDS,
    FitAtBoundError,
    apply_calibration,
    calibration_report,
    fit_calibration,
    fit_platt,
    fit_temperature,
    platt_fit,
    platt_targets,
    temperature_fit,
    validate_calibration,
)
from inference.scoring.operating_points import conformal_rank, real_quantile, reals_needed, threshold_at_fpr, tpr_at_fpr


def over_confident(rng: np.random.Generator, videos: int, sharpen: float, shift: float = 0.0):
    """Labels drawn from sigmoid(z), scores sigmoid(sharpen * z + shift): the truth is known."""
    z = rng.normal(0.0, 2.0, videos)
    labels = (rng.random(videos) < expit(z)).astype(np.int64)
    return labels, expit(sharpen * z + shift)


# ---------------------------------------------------------------- fitting


def test_temperature_is_recovered_from_data_generated_with_it():
    labels, scores = over_confident(np.random.default_rng(0), 20000, sharpen=2.5)
    assert fit_temperature(labels, scores) == pytest.approx(2.5, abs=0.1)
    labels, scores = over_confident(np.random.default_rng(1), 20000, sharpen=0.5)  # under-confident
    assert fit_temperature(labels, scores) == pytest.approx(0.5, abs=0.03)


def test_platt_recovers_slope_and_intercept():
    # scores = sigmoid(2 z + 1)  ->  the truth is sigmoid((logit - 1) / 2) = sigmoid(0.5 logit - 0.5)
    labels, scores = over_confident(np.random.default_rng(2), 20000, sharpen=2.0, shift=1.0)
    a, b = fit_platt(labels, scores)
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(-0.5, abs=0.08)
    assert fit_calibration(labels, scores, "platt") == {"method": "platt", "a": a, "b": b}


def test_temperature_lowers_ece_and_log_loss_on_fresh_over_confident_scores():
    fit_labels, fit_scores = over_confident(np.random.default_rng(3), 4000, sharpen=3.0)
    calibration = fit_calibration(fit_labels, fit_scores)
    labels, scores = over_confident(np.random.default_rng(4), 4000, sharpen=3.0)
    report = calibration_report(labels, scores, apply_calibration(scores, calibration))
    assert report["videos"] == 4000 and report["real"] + report["fake"] == 4000 and report["fake"] > 1000
    assert report["ece_before"] > 0.08 and report["ece_after"] < report["ece_before"] / 3
    assert report["log_loss_after"] < report["log_loss_before"] - 0.05


def test_fitting_refuses_one_class_and_mismatched_inputs():
    with pytest.raises(ValueError, match="real and fake"):
        fit_temperature([1, 1, 1], [0.2, 0.7, 0.9])
    with pytest.raises(ValueError, match="3 labels but 2"):
        fit_platt([0, 1, 1], [0.2, 0.7])
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        fit_temperature([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibration([0, 1], [0.2, 0.7], "isotonic")


# ---------------------------------------------------------------- applying


def test_no_calibration_returns_exactly_the_same_values():
    scores = np.array([0.0, 1e-20, 0.3, 0.5, 0.999999999, 1.0], dtype=np.float32)
    result = apply_calibration(scores, None)
    assert np.array_equal(result, scores.astype(np.float64))  # no clipping, no logit round trip
    assert result is not scores


def test_applying_a_temperature_is_sigmoid_of_logit_over_t():
    scores = np.array([0.1, 0.5, 0.62, 0.97])
    expected = [1 / (1 + math.exp(-math.log(p / (1 - p)) / 2.5)) for p in scores]
    assert apply_calibration(scores, {"method": "temperature", "temperature": 2.5}) == pytest.approx(expected)
    expected = [1 / (1 + math.exp(-(0.5 * math.log(p / (1 - p)) + 0.2))) for p in scores]
    assert apply_calibration(scores, {"method": "platt", "a": 0.5, "b": 0.2}) == pytest.approx(expected)
    assert float(apply_calibration(0.62, {"method": "temperature", "temperature": 1.0})) == pytest.approx(0.62)


@pytest.mark.parametrize(
    "calibration, message",
    [
        ({"method": "temperature", "temperature": 0.0}, "> 0"),
        ({"method": "temperature", "temperature": -1.5}, "> 0"),
        ({"method": "temperature", "temperature": float("nan")}, "finite"),
        ({"method": "temperature", "temperature": float("inf")}, "finite"),
        ({"method": "temperature", "temperature": "2"}, "finite number"),
        ({"method": "temperature", "temperature": True}, "finite number"),
        ({"method": "temperature"}, "needs 'temperature'"),
        ({"method": "platt", "a": 1.0}, "needs 'b'"),
        ({"method": "platt", "a": -1.0, "b": 0.0}, "ranking flips"),
        ({"method": "isotonic"}, "method must be one of"),
        ({"temperature": 2.0}, "method must be one of"),
        ([2.0], "mapping"),
    ],
)
def test_invalid_calibrations_are_refused(calibration, message):
    with pytest.raises(ValueError, match=message):
        validate_calibration(calibration)
    with pytest.raises(ValueError, match=message):
        apply_calibration([0.3], calibration)


def test_a_valid_calibration_with_report_keys_is_accepted():
    calibration = {"method": "temperature", "temperature": 2, "videos": 40, "ece_before": 0.2}
    assert validate_calibration(calibration) is calibration


# ---------------------------------------------------------------- operating points


def simulated_false_positive_rate(reals: int, pick_threshold, draws: int = 2000, seed: int = 0) -> float:
    """Average, over many draws of `reals` real scores, of the threshold's rate on fresh reals.

    Real scores are standard normal, so the rate on a fresh real is exactly 1 - Phi(threshold);
    a sampled check on 200 fresh reals per draw is asserted to agree.
    """
    rng = np.random.default_rng(seed)
    thresholds = np.array([pick_threshold(rng.normal(size=reals)) for _ in range(draws)])
    exact = float(norm.sf(thresholds).mean())
    sampled = float((rng.normal(size=(draws, 200)) > thresholds[:, None]).mean())
    assert sampled == pytest.approx(exact, abs=0.004)
    return exact


@pytest.mark.parametrize("reals, at_least", [(50, 0.03), (200, 0.04)])
def test_conformal_threshold_keeps_fresh_false_positives_at_or_below_the_target(reals, at_least):
    rate = simulated_false_positive_rate(reals, lambda scores: threshold_at_fpr(scores, 0.05))
    # the expected rate is exactly k / (n + 1): 2/51 = 0.039 for n = 50, 10/201 = 0.0498 for n = 200
    assert at_least <= rate <= 0.05 + 0.002
    assert rate == pytest.approx(conformal_rank(0.05, reals) / (reals + 1), abs=0.002)


def test_the_naive_empirical_quantile_overshoots_the_target_for_small_sets():
    naive = simulated_false_positive_rate(50, lambda scores: float(np.quantile(scores, 0.95)))
    assert naive > 0.06  # about 3.45 / 51 = 0.068: what dropping the correction would give
    # the in-sample rule "largest rate on these reals <= 5%" is no better: 3rd largest, 3/51 = 0.059
    in_sample = simulated_false_positive_rate(50, lambda scores: float(np.sort(scores)[-3]))
    assert in_sample > 0.055


def test_threshold_is_the_kth_largest_real_with_strict_fake_above():
    reals = np.arange(1.0, 40.0)  # 39 reals, 5% -> k = floor(0.05 * 40) = 2 -> second largest
    assert threshold_at_fpr(reals, 0.05) == 38.0
    assert threshold_at_fpr(np.arange(1.0, 39.0), 0.05) == 38.0  # 38 reals: k = 1 -> the largest
    assert threshold_at_fpr([0.5] * 30, 0.05) == 0.5  # ties: nothing is strictly above -> rate 0


def test_too_few_reals_are_refused_with_the_number_needed():
    assert reals_needed(0.05) == 19 and reals_needed(0.01) == 99 and reals_needed(0.001) == 999
    assert reals_needed(0.3) == 3  # floor(0.3 * 4) = 1, floor(0.3 * 3) = 0
    assert conformal_rank(0.29, 99) == 29  # float noise (0.29 * 100 = 28.99...) costs no rank
    with pytest.raises(ValueError, match="18 real videos cannot support a 0.05 .* at least 19 real videos"):
        threshold_at_fpr(np.arange(18.0), 0.05)
    assert threshold_at_fpr(np.arange(19.0), 0.05) == 18.0
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        threshold_at_fpr(np.arange(100.0), 0.0)


def test_real_quantile_is_the_fraction_of_reals_at_or_above():
    reals = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    assert real_quantile(reals, 0.9) == pytest.approx(0.2)
    assert real_quantile(reals, 0.91) == pytest.approx(0.1)
    assert real_quantile(reals, 0.99) == 0.0 and real_quantile(reals, 0.0) == 1.0


def test_tpr_at_fpr_on_a_hand_made_example():
    reals = [i / 100 for i in range(1, 40)]  # 39 reals, 0.01 .. 0.39: 5% -> second largest = 0.38
    fakes = [0.2, 0.385, 0.39, 0.5, 0.9]  # strictly above 0.38: 0.385, 0.39, 0.5, 0.9
    labels = [0] * len(reals) + [1] * len(fakes)
    result = tpr_at_fpr(labels, reals + fakes, 0.05)
    assert result["threshold"] == 0.38 and result["tpr"] == pytest.approx(4 / 5)
    assert result["reals"] == 39 and result["fakes"] == 5 and result["fpr_on_these_reals"] == pytest.approx(1 / 39)
    unsupported = tpr_at_fpr(labels, reals + fakes, 0.01)  # needs 99 reals
    assert unsupported["tpr"] is None and unsupported["threshold"] is None
    assert unsupported["reals"] == 39 and unsupported["reals_needed"] == 99
    no_fakes = tpr_at_fpr([0] * 39, reals, 0.05)
    assert no_fakes["tpr"] is None and no_fakes["threshold"] == 0.38


# ---------------------------------------------------------------- small and separable sets, search bounds


SEPARABLE = (
    (np.array([0, 0, 0, 1, 1, 1]), np.array([0.4, 0.42, 0.45, 0.55, 0.58, 0.6])),  # 3 real, 3 fake
    (np.array([0] * 6 + [1] * 12), np.linspace(0.05, 0.45, 6).tolist() + np.linspace(0.6, 0.97, 12).tolist()),
    # the 8 out-of-fold videos, 0.47 to 0.56, every real below every fake (hard labels: T 0.01)
    (np.array([0, 0, 0, 0, 1, 1, 1, 1]), np.array([0.47, 0.48, 0.49, 0.5, 0.52, 0.53, 0.55, 0.56])),
)


@pytest.mark.parametrize("labels, scores", SEPARABLE)
def test_separable_small_sets_fit_inside_the_bounds_and_claim_no_certainty(labels, scores):
    scores = np.asarray(scores)
    temperature, at_bound = temperature_fit(labels, scores)
    assert not at_bound and math.isfinite(temperature)
    assert TEMPERATURE_BOUNDS[0] * 2 < temperature < TEMPERATURE_BOUNDS[1] / 2
    (a, b), at_bound = platt_fit(labels, scores)
    assert not at_bound and math.isfinite(a) and math.isfinite(b) and 0 < a < PLATT_SLOPE_BOUNDS[1] / 2
    targets = platt_targets(labels)
    for calibration in (fit_calibration(labels, scores), fit_calibration(labels, scores, "platt")):
        calibrated = apply_calibration(scores, calibration)
        # moderate: no video within 0.005 of 0 or 1 (the labels' own fit put them at 1e-15, 34 nats of
        # log loss for a mistake), each class's mean near its prior-corrected target
        assert calibrated.min() > 0.005 and calibrated.max() < 0.997
        assert calibrated[labels == 1].mean() == pytest.approx(targets[labels == 1][0], abs=0.2)
        assert calibrated[labels == 0].mean() == pytest.approx(targets[labels == 0][0], abs=0.2)


def test_platt_targets_are_platts():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1])  # 3 real, 9 fake
    assert platt_targets(labels).tolist() == [1 / 5] * 3 + [10 / 11] * 9


@pytest.mark.parametrize("seed, videos, separation", [(0, 6, 1.0), (1, 12, 2.0), (2, 40, 1.0), (3, 200, 3.0)])
def test_platt_is_scikit_learns_sigmoid_calibration_on_the_logits(seed, videos, separation):
    """sklearn fits P(fake) = 1 / (1 + exp(A f + B)) to the same targets: a = -A, b = -B."""
    calibration = pytest.importorskip("sklearn.calibration")
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(videos // 2, int), np.ones(videos - videos // 2, int)]
    scores = expit(separation * (2 * labels - 1) + rng.normal(0, 1.5, videos))
    slope, intercept = calibration._sigmoid_calibration(logit(scores), labels)
    (a, b), at_bound = platt_fit(labels, scores)
    assert not at_bound
    assert a == pytest.approx(-slope, rel=1e-4, abs=1e-5) and b == pytest.approx(-intercept, rel=1e-4, abs=1e-4)
    separable = np.array([0.4, 0.42, 0.45, 0.55, 0.58, 0.6])
    slope, intercept = calibration._sigmoid_calibration(logit(separable), SEPARABLE[0][0])
    assert platt_fit(SEPARABLE[0][0], separable)[0] == pytest.approx((-slope, -intercept), rel=1e-4, abs=1e-4)


def test_a_temperature_is_platt_without_a_shift_where_the_data_are_symmetric():
    """Reals' logits the mirror of the fakes': Platt's best shift is 0 and its slope is 1 / T."""
    fakes = expit(np.random.default_rng(4).normal(1.0, 1.5, 25))
    labels, scores = np.r_[np.zeros(25, int), np.ones(25, int)], np.r_[1 - fakes, fakes]
    (a, b), _ = platt_fit(labels, scores)
    assert b == pytest.approx(0, abs=1e-5)
    assert fit_temperature(labels, scores) == pytest.approx(1 / a, rel=1e-4)


def test_a_fit_at_a_search_bound_is_still_refused_unless_allowed():
    labels = np.array([0, 0, 0, 1, 1, 1])
    reversed_ = np.array([0.6, 0.58, 0.55, 0.45, 0.42, 0.4])  # every real above every fake
    temperature, at_bound = temperature_fit(labels, reversed_)
    assert at_bound and temperature == pytest.approx(100, rel=1e-3)
    with pytest.raises(FitAtBoundError, match="temperature 100 .* flatten every probability"):
        fit_calibration(labels, reversed_)
    assert fit_calibration(labels, reversed_, allow_bound=True)["temperature"] == pytest.approx(temperature)
    (a, _), at_bound = platt_fit(labels, reversed_)
    assert at_bound and a == pytest.approx(0.01, rel=1e-3)
    with pytest.raises(FitAtBoundError, match="Platt a 0.01, .* flatten every probability"):
        fit_calibration(labels, reversed_, "platt")
    # scores that barely leave 0.5: a 100-fold stretch is not enough to reach the targets
    flat = np.array([0.49999, 0.499995, 0.5, 0.500005, 0.50001, 0.500015])
    temperature, at_bound = temperature_fit(labels, flat)
    assert at_bound and temperature == pytest.approx(0.01, rel=1e-3)
    with pytest.raises(FitAtBoundError, match="stretch the scores more than the search allows"):
        fit_calibration(labels, flat)
    labels, scores = over_confident(np.random.default_rng(5), 500, sharpen=2.0)
    assert temperature_fit(labels, scores)[1] is False and platt_fit(labels, scores)[1] is False
    assert fit_calibration(labels, scores)["temperature"] == temperature_fit(labels, scores)[0]
