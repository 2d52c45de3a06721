"""Offline scoring metrics of a submission against labels (label 1 = fake).

``score`` is the dict ``inference.score`` reports (and ``evaluate`` and ``timeliness`` read): the
competition's log loss, ranking metrics, the confusion at 0.5, calibration (ECE, Brier) and the
true-positive rate at fixed false-positive rates with the number of real videos behind each.
"""

from __future__ import annotations

import numpy as np

from inference.scoring.operating_points import tpr_at_fpr

CLIP = 1e-15
# False-positive rates at which ``score`` reports the true-positive rate: issue 20's 5% and 1%,
# and 0.1% where the set has the 999 reals that the finite-sample threshold needs for it.
FPR_TARGETS = (0.05, 0.01, 0.001)


def competition_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Kaggle DFDC's log loss: probabilities clipped to [1e-15, 1 - 1e-15]."""
    p = np.clip(np.asarray(probabilities, np.float64), CLIP, 1 - CLIP)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def equal_error_rate(labels: np.ndarray, probabilities: np.ndarray) -> float:
    from sklearn.metrics import roc_curve  # here: importing sklearn costs half a second of every prediction's start

    false_positive, true_positive, _ = roc_curve(labels, probabilities, drop_intermediate=False)
    false_negative = 1 - true_positive
    index = int(np.nanargmin(np.abs(false_negative - false_positive)))
    return float((false_positive[index] + false_negative[index]) / 2)


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            error += chosen.mean() * abs(labels[chosen].mean() - probabilities[chosen].mean())
    return float(error)


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared error of the probabilities against the 0/1 labels (0 is perfect, 0.25 is
    always answering 0.5). Unlike log loss it stays finite for a confident mistake, so a few such
    videos do not swamp it; the probabilities are used as given, without clipping."""
    y = np.asarray(labels, np.float64)
    p = np.asarray(probabilities, np.float64)
    return float(np.mean((p - y) ** 2))


def fpr_key(target_fpr: float) -> str:
    """The JSON key of a target rate in ``score``'s ``tpr_at_fpr``: "0.05", "0.01", "0.001"."""
    return f"{target_fpr:g}"


def tpr_at_fpr_targets(labels: np.ndarray, probabilities: np.ndarray, targets=FPR_TARGETS) -> dict:
    """{fpr_key(target): operating_points.tpr_at_fpr(...)} for each target: the TPR at the finite-sample
    threshold picked from these reals, with the counts of reals and fakes behind it, and tpr None
    (with ``reals_needed``) where the reals cannot support the target."""

    return {fpr_key(target): tpr_at_fpr(labels, probabilities, target) for target in targets}


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> list[dict]:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int((which == b).sum()),
            "mean_probability": float(probabilities[which == b].mean()) if (which == b).any() else None,
            "fraction_fake": float(labels[which == b].mean()) if (which == b).any() else None,
        }
        for b in range(bins)
    ]


def score(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Every metric of one set of videos; None where a metric needs both classes (or, for a rate
    in ``tpr_at_fpr``, more reals than the set has). The confusion matrix and accuracy, precision,
    recall and F1 are at ``threshold``; ``tpr_at_fpr`` uses thresholds picked from the reals."""
    from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score  # as in equal_error_rate

    labels = np.asarray(labels, np.int64)
    probabilities = np.asarray(probabilities, np.float64)
    predicted = (probabilities > threshold).astype(np.int64)
    both_classes = len(np.unique(labels)) == 2
    (tn, fp), (fn, tp) = confusion_matrix(labels, predicted, labels=[0, 1])
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "videos": int(len(labels)),
        "fake": int(labels.sum()),
        "real": int(len(labels) - labels.sum()),
        "log_loss": competition_log_loss(labels, probabilities),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else None,
        "average_precision": float(average_precision_score(labels, probabilities)) if both_classes else None,
        "eer": equal_error_rate(labels, probabilities) if both_classes else None,
        "accuracy": float((predicted == labels).mean()),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "ece": expected_calibration_error(labels, probabilities),
        "brier": brier_score(labels, probabilities),
        "tpr_at_fpr": tpr_at_fpr_targets(labels, probabilities),
    }
