"""Preprocessing: video reading, face detection, crops, landmarks, diffs, folds, demo data."""
