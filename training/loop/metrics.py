"""Video-level validation score of the recipe: per-video mean of frame probabilities, then the
log loss over fake videos and over real videos, averaged."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

EPSILON = 1e-15


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, np.float64), EPSILON, 1 - EPSILON)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def video_means(videos: list[str], probabilities: list[float], labels: list[float]) -> dict[str, tuple[float, float]]:
    """{video: (mean probability, label)} from per-frame rows."""
    sums: dict[str, list[float]] = defaultdict(list)
    label_of: dict[str, float] = {}
    for video, probability, label in zip(videos, probabilities, labels, strict=True):
        sums[video].append(float(probability))
        label_of[video] = round(float(label))
    return {video: (float(np.mean(values)), label_of[video]) for video, values in sums.items()}


def balanced_video_log_loss(per_video: dict[str, tuple[float, float]]) -> dict[str, float]:
    """The recipe's score: (log loss over fake videos + log loss over real videos) / 2."""
    probabilities = np.array([p for p, _ in per_video.values()])
    labels = np.array([y for _, y in per_video.values()])
    fake_loss = log_loss(labels[labels > 0.5], probabilities[labels > 0.5])
    real_loss = log_loss(labels[labels < 0.5], probabilities[labels < 0.5])
    present = [loss for loss in (fake_loss, real_loss) if not np.isnan(loss)]
    accuracy = float(np.mean((probabilities > 0.5) == (labels > 0.5))) if len(labels) else float("nan")
    return {
        "score": float(np.mean(present)) if present else float("nan"),
        "fake_loss": fake_loss,
        "real_loss": real_loss,
        "video_log_loss": log_loss(labels, probabilities),
        "video_accuracy": accuracy,
        "videos": len(labels),
    }
