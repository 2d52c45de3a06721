"""Scores and what they are measured against: metrics (AUC, log loss, calibration error), operating
points, dataset labels, the scoring of a submission (python -m inference.score), the settings a
score was made with."""
