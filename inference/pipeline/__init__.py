"""One video to one number: the detector interface (detector.py: what a detection recipe is; the
winner's and the temporal recipes in recipes.py; the options made detectors in
detector_options.py), frames read ahead, faces found and tracked, crops and clips scored,
aggregated per video; a folder's prediction with its progress file and submission (python -m
inference.predict)."""
