"""Preprocessing: faces < demo_world, under the steps (python -m preprocess.<step>).

The steps and what they share sit at the top: datasets to records, detect_faces, extract_crops,
landmarks, diffs, folds, run_all, inventory, bench. Below them, faces/ (detection, seeded detection,
face geometry, crop geometry, tracks) < demo_world/ (the embedded demo dataset's building blocks).
"""
