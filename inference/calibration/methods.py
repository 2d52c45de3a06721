"""Calibrated probabilities for per-video scores (the operating points: inference/scoring/operating_points.py).

Two separate questions a person asks of "FAKE 0.62":

- *Is 0.62 a probability?*  An ensemble's raw output is usually over-confident. A temperature
  T (``sigmoid(logit(p) / T)``) or Platt's ``sigmoid(a * logit(p) + b)``, fitted on labelled
  videos the models did not train on, turns it into one (log loss and ECE before/after say how
  much it helped).  Both maps are monotone, so rankings, AUC and thresholds on ranks are unchanged.
- *How often does a real video score this high?*  inference/scoring/operating_points.py answers it.

Both maps are fitted to Platt's prior-corrected targets rather than to the hard labels (Platt 1999,
section 2.2, as scikit-learn's sigmoid calibration does): a fake counts as (N+ + 1) / (N+ + 2), a
real as 1 / (N- + 2), for N+ fakes and N- reals. On many videos this is the plain fit; on a handful
it is the fit a uniform prior on each class's rate gives, and scores that happen to separate the
classes no longer drive the map to certainty (without it, 3 reals below 3 fakes fit a temperature
of 0, that is 0.000 and 1.000 for every video).

Label 1 = fake.  Probabilities
are clipped to [1e-15, 1 - 1e-15] before taking logits, as ``metrics.competition_log_loss`` does.
Everything here is a pure function of arrays and dicts; reading and writing the ensemble YAML is
the caller's job.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy.special import expit, log_expit, logit

from common.bounded_numbers import finite_number, shown
from inference.scoring.metrics import CLIP, competition_log_loss, expected_calibration_error

logger = logging.getLogger("inference.calibration.methods")

METHODS = ("temperature", "platt")
# Search ranges: wide enough for any sane ensemble; hitting a bound means the data are (nearly)
# separable or anti-calibrated: fit_calibration refuses such a fit unless told to allow it.
TEMPERATURE_BOUNDS = (0.01, 100.0)
PLATT_SLOPE_BOUNDS = (0.01, 100.0)
PLATT_INTERCEPT_BOUNDS = (-50.0, 50.0)


# ---------------------------------------------------------------- inputs


def _labels_and_probabilities(labels, probabilities) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies: same length, labels in {0, 1} with both classes, p in [0, 1]."""
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(probabilities, np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{len(y)} labels but {len(p)} probabilities")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not (y == 0).any() or not (y == 1).any():
        raise ValueError(f"calibration needs real and fake videos; got {int((y == 0).sum())} real, {int(y.sum())} fake")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must be finite and within [0, 1]")
    return y, p


def _logits(probabilities) -> np.ndarray:
    """logit of the probabilities after the competition's clipping (finite for 0 and 1)."""
    return logit(np.clip(np.asarray(probabilities, np.float64), CLIP, 1 - CLIP))


def _mean_log_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    """Log loss (cross-entropy) of sigmoid(logits) against `labels` (0 and 1, or targets between),
    computed stably in logit space."""
    return float(-np.mean(labels * log_expit(logits) + (1 - labels) * log_expit(-logits)))


def platt_targets(labels) -> np.ndarray:
    """Platt's prior-corrected targets for 0/1 labels: (N+ + 1) / (N+ + 2) for each of the N+
    fakes, 1 / (N- + 2) for each of the N- reals (Platt 1999; scikit-learn's
    ``_sigmoid_calibration``). The fit's log loss is taken against these, never 0 or 1, so that
    no finite data set makes certainty the best fit."""
    y = np.asarray(labels, np.float64).ravel()
    fakes = float((y == 1).sum())
    reals = float(len(y) - fakes)
    return np.where(y == 1, (fakes + 1) / (fakes + 2), 1 / (reals + 2))


# ---------------------------------------------------------------- fitting


class FitAtBoundError(ValueError):
    """A fit that stopped at a search bound: the scores carry no information or the wrong way
    round (the calibration would flatten every probability), or, which the prior-corrected
    targets should prevent, it would claim certainty."""


def _at_bound(value: float, bounds: tuple[float, float], log_scale: bool = True) -> bool:
    """Whether a fitted value is at one of its search bounds (to 0.1%, on a log scale for a scale)."""
    if log_scale:
        return any(abs(math.log(value) - math.log(bound)) < 1e-3 for bound in bounds)
    return any(abs(value - bound) < 1e-3 * max(1.0, abs(bound)) for bound in bounds)


def temperature_fit(labels, probabilities) -> tuple[float, bool]:
    """(the temperature T > 0 minimising the log loss of sigmoid(logit(p) / T) against Platt's
    targets (``platt_targets``), whether it is at a bound of ``TEMPERATURE_BOUNDS``).

    T > 1 softens an over-confident ensemble, T < 1 sharpens an under-confident one.  Searched on
    log T, where the loss is smooth and unimodal in practice.
    """
    y, p = _labels_and_probabilities(labels, probabilities)
    y = platt_targets(y)
    z = _logits(p)
    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    from scipy.optimize import minimize_scalar  # here: a fifth of a second of every prediction's start

    result = minimize_scalar(
        lambda log_t: _mean_log_loss(y, z / math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    temperature = float(math.exp(result.x))
    return temperature, _at_bound(temperature, TEMPERATURE_BOUNDS)


def fit_temperature(labels, probabilities) -> float:
    """The temperature of ``temperature_fit`` (a warning where it is at a search bound)."""
    temperature, at_bound = temperature_fit(labels, probabilities)
    if at_bound:
        logger.warning(
            "fitted temperature %.4g is at the search bound %s",
            temperature,
            TEMPERATURE_BOUNDS,
        )
    return temperature


def platt_fit(labels, probabilities) -> tuple[tuple[float, float], bool]:
    """(Platt's (a, b) minimising the log loss of sigmoid(a * logit(p) + b) against Platt's targets
    (``platt_targets``), whether either is at a bound of ``PLATT_SLOPE_BOUNDS`` /
    ``PLATT_INTERCEPT_BOUNDS``).

    This is scikit-learn's ``_sigmoid_calibration`` on the logits (its A, B are -a, -b), except
    that ``a`` is bounded to be positive so that the map never reverses which videos look fake;
    ``b`` shifts the scores, which a temperature alone cannot do (useful when the base rate of
    fakes differs from training's).
    """
    y, p = _labels_and_probabilities(labels, probabilities)
    y = platt_targets(y)
    z = _logits(p)

    def loss_and_gradient(parameters):
        a, b = parameters
        shifted = a * z + b
        residual = expit(shifted) - y  # d loss / d shifted
        return _mean_log_loss(y, shifted), np.array([np.mean(residual * z), np.mean(residual)])

    from scipy.optimize import minimize  # as in temperature_fit

    result = minimize(
        loss_and_gradient,
        x0=np.array([1.0, 0.0]),
        jac=True,
        method="L-BFGS-B",
        bounds=[PLATT_SLOPE_BOUNDS, PLATT_INTERCEPT_BOUNDS],
        options={"gtol": 1e-9, "ftol": 1e-15, "maxiter": 1000},
    )
    a, b = (float(value) for value in result.x)
    if not result.success:
        logger.warning("Platt fit did not converge (%s); using a=%.4g, b=%.4g", result.message, a, b)
    at_bound = _at_bound(a, PLATT_SLOPE_BOUNDS) or _at_bound(b, PLATT_INTERCEPT_BOUNDS, log_scale=False)
    return (a, b), bool(at_bound)


def fit_platt(labels, probabilities) -> tuple[float, float]:
    """Platt's (a, b) of ``platt_fit``."""
    return platt_fit(labels, probabilities)[0]


def _bound_problem(calibration: dict) -> str:
    """Why a fit at a search bound is no calibration, in words."""
    if calibration["method"] == "temperature":
        sharpened = calibration["temperature"] < 1
        where = f"temperature {calibration['temperature']:.4g} is at its search bound {TEMPERATURE_BOUNDS}"
    else:
        sharpened = calibration["a"] > 1
        where = (
            f"Platt a {calibration['a']:.4g}, b {calibration['b']:.4g} is at (or would run past) a search bound "
            f"(a {PLATT_SLOPE_BOUNDS}, b {PLATT_INTERCEPT_BOUNDS})"
        )
    if sharpened:
        why = (
            "the fit would stretch the scores more than the search allows (scores that barely leave 0.5), "
            "and the calibration would claim near certainty"
        )
    else:
        why = (
            "the scores tell real from fake (almost) not at all or the wrong way round, and the calibration "
            "would flatten every probability"
        )
    return f"the fitted {where}: {why}"


def fit_calibration(labels, probabilities, method: str = "temperature", allow_bound: bool = False) -> dict:
    """The calibration dict for ``method`` (the form stored under ``calibration:``). A fit at a
    search bound is a FitAtBoundError (saying why) unless ``allow_bound`` (inference.calibrate's
    --force)."""
    logits = _logits(_labels_and_probabilities(labels, probabilities)[1])
    if np.ptp(logits) == 0 and not allow_bound:
        raise FitAtBoundError(
            f"every score is {float(expit(logits[0])):.6g}: the scores tell real from fake not at all, and any "
            "calibration of them would be made up"
        )
    if method == "temperature":
        temperature, at_bound = temperature_fit(labels, probabilities)
        calibration = {"method": "temperature", "temperature": temperature}
    elif method == "platt":
        (a, b), at_bound = platt_fit(labels, probabilities)
        calibration = {"method": "platt", "a": a, "b": b}
    else:
        raise ValueError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if at_bound and not allow_bound:
        raise FitAtBoundError(_bound_problem(calibration))
    if at_bound:
        logger.warning("%s (stored all the same)", _bound_problem(calibration))
    return calibration


# ---------------------------------------------------------------- applying


def _finite_number(calibration: dict, key: str) -> float:
    if key not in calibration:
        raise ValueError(f"{calibration.get('method')} calibration needs {key!r}; got keys {sorted(calibration)}")
    value = calibration[key]
    number = finite_number(value)  # 10**400 too: no float holds it
    if number is None:
        raise ValueError(f"calibration {key!r} must be a finite number, got {shown(value)}")
    return number


def validate_calibration(calibration: dict | None) -> dict | None:
    """Check a calibration dict; returns it unchanged, or raises ValueError saying what is wrong.

    Accepted: ``{"method": "temperature", "temperature": T}`` with finite T > 0, or
    ``{"method": "platt", "a": a, "b": b}`` with finite a > 0 (a <= 0 would flatten or reverse
    the ranking) and finite b.  Other keys (e.g. the fit's report) are allowed and ignored.
    """
    if calibration is None:
        return None
    if not isinstance(calibration, dict):
        raise ValueError(f"calibration must be a mapping, got {type(calibration).__name__}")
    method = calibration.get("method")
    if method == "temperature":
        if _finite_number(calibration, "temperature") <= 0:
            raise ValueError(f"calibration temperature must be > 0, got {calibration['temperature']!r}")
    elif method == "platt":
        if _finite_number(calibration, "a") <= 0:
            raise ValueError(f"Platt slope 'a' must be > 0 (else the ranking flips), got {calibration['a']!r}")
        _finite_number(calibration, "b")
    else:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    return calibration


def apply_calibration(probabilities, calibration: dict | None) -> np.ndarray:
    """Calibrated probabilities (float64 array, same shape; a 0-d array for a scalar).

    ``None`` means uncalibrated: the same values come back, untouched (no clipping, no round
    trip through logits), so an ensemble without ``calibration:`` behaves exactly as before.
    """
    values = np.array(probabilities, dtype=np.float64)
    validate_calibration(calibration)
    if calibration is None:
        return values
    z = _logits(values)
    if calibration["method"] == "temperature":
        return expit(z / float(calibration["temperature"]))
    return expit(float(calibration["a"]) * z + float(calibration["b"]))


def calibration_report(labels, before, after) -> dict:
    """Log loss and ECE before and after calibration, and how many videos of each class."""
    y = np.asarray(labels, np.int64).ravel()
    before = np.asarray(before, np.float64).ravel()
    after = np.asarray(after, np.float64).ravel()
    if not len(y) == len(before) == len(after):
        raise ValueError(f"lengths differ: {len(y)} labels, {len(before)} before, {len(after)} after")
    return {
        "videos": int(len(y)),
        "real": int((y == 0).sum()),
        "fake": int((y == 1).sum()),
        "log_loss_before": competition_log_loss(y, before),
        "log_loss_after": competition_log_loss(y, after),
        "ece_before": expected_calibration_error(y, before),
        "ece_after": expected_calibration_error(y, after),
    }
