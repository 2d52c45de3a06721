"""Offline scoring metrics of a submission against labels (label 1 = fake)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

CLIP = 1e-15


def competition_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Kaggle DFDC's log loss: probabilities clipped to [1e-15, 1 - 1e-15]."""
    p = np.clip(np.asarray(probabilities, np.float64), CLIP, 1 - CLIP)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def equal_error_rate(labels: np.ndarray, probabilities: np.ndarray) -> float:
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
    }
