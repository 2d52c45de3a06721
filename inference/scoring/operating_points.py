"""False-positive-rate operating points from the scores of real videos: "how often does a real
video score this high?"

`threshold_at_fpr` picks, from held-out reals, the threshold whose false-positive rate on a fresh
real video is at most the target, with the finite-sample (conformal) correction: the k-th largest
real score, k = floor(target x (n + 1)); a video is FAKE when its score is above it (strict). A
target the reals cannot support is refused with the number of reals it needs (`reals_needed`: 19
for 5%, 99 for 1%, 999 for 0.1%). `real_quantile` reads a score as "x% of real videos score this
high"; `tpr_at_fpr` is the detection rate at the threshold a set's own reals give. Label 1 = fake.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _check_target(target_fpr: float) -> float:
    if isinstance(target_fpr, bool) or not isinstance(target_fpr, numbers.Real) or not 0 < target_fpr < 1:
        raise ValueError(f"target false-positive rate must be strictly between 0 and 1, got {target_fpr!r}")
    return float(target_fpr)


def _real_scores(real_scores) -> np.ndarray:
    scores = np.asarray(real_scores, np.float64).ravel()
    if not np.isfinite(scores).all():
        raise ValueError("real scores must be finite")
    return scores


def conformal_rank(target_fpr: float, reals: int) -> int:
    """k = floor(target * (reals + 1)): the threshold is the k-th largest real score.

    The product is rounded to 9 decimals first so that float noise (0.29 * 100 = 28.999...96)
    does not cost a rank; the guarantee k / (n + 1) <= target then holds to that precision.
    """
    return math.floor(round(_check_target(target_fpr) * (reals + 1), 9))


def reals_needed(target_fpr: float) -> int:
    """The fewest real videos for which ``conformal_rank`` is at least 1 (about 1/target - 1)."""
    reals = max(0, math.ceil(1 / _check_target(target_fpr)) - 1)
    while conformal_rank(target_fpr, reals) < 1:
        reals += 1
    while reals > 0 and conformal_rank(target_fpr, reals - 1) >= 1:
        reals -= 1
    return reals


def threshold_at_fpr(real_scores, target_fpr: float) -> float:
    """Threshold t such that a fresh real video has P(score > t) <= target_fpr.

    With the n real scores sorted from the largest, t is the k-th largest, k = floor(target *
    (n + 1)).  If the fresh real's score is exchangeable with the n (same distribution, not used
    to train), its rank among the n + 1 is uniform, so it lands strictly above the k-th largest of
    the others with probability at most k / (n + 1) <= target (exactly k / (n + 1) for continuous
    scores; ties only make '>' rarer, so the bound still holds).  The guarantee is on average over
    the draw of the n reals; a particular threshold can be above or below it.

    The plain empirical quantile (e.g. ``np.quantile(reals, 1 - target)``) drops the "+ 1" and
    exceeds the target for small n.  Raises ValueError when k < 1, saying how many reals the
    target needs.
    """
    scores = _real_scores(real_scores)
    rank = conformal_rank(target_fpr, len(scores))
    if rank < 1:
        raise ValueError(
            f"{len(scores)} real videos cannot support a {target_fpr:g} false-positive rate: the "
            f"finite-sample threshold needs at least {reals_needed(target_fpr)} real videos"
        )
    return float(np.sort(scores)[::-1][rank - 1])


def real_quantile(real_scores, score: float) -> float:
    """Fraction of the real videos scoring at or above ``score`` ("x% of reals score this high")."""
    scores = _real_scores(real_scores)
    if len(scores) == 0:
        raise ValueError("no real scores to compare with")
    return float(np.mean(scores >= float(score)))


def tpr_at_fpr(labels, scores, target_fpr: float) -> dict:
    """True-positive rate at the threshold ``threshold_at_fpr`` picks from this set's reals.

    The threshold is the conformal one (the operating point ``calibrate`` would store from these
    reals), so the reported TPR belongs to a threshold whose expected false-positive rate on
    fresh reals is at most the target; its false-positive rate on these reals is reported too.
    ``tpr`` and ``threshold`` are None where the reals cannot support the target (or, for
    ``tpr``, where there are no fakes); ``reals`` says how many real videos are behind the rate.
    """
    y = np.asarray(labels, np.int64).ravel()
    values = np.asarray(scores, np.float64).ravel()
    if y.shape != values.shape:
        raise ValueError(f"{len(y)} labels but {len(values)} scores")
    reals, fakes = values[y == 0], values[y == 1]
    result = {
        "target_fpr": _check_target(target_fpr),
        "reals": int(len(reals)),
        "fakes": int(len(fakes)),
        "reals_needed": reals_needed(target_fpr),
        "threshold": None,
        "tpr": None,
        "fpr_on_these_reals": None,
    }
    if conformal_rank(target_fpr, len(reals)) < 1:
        return result
    threshold = threshold_at_fpr(reals, target_fpr)
    result["threshold"] = threshold
    result["fpr_on_these_reals"] = float(np.mean(reals > threshold))
    if len(fakes):
        result["tpr"] = float(np.mean(fakes > threshold))
    return result
