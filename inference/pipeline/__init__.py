"""One video to one number: frames read ahead, faces found and tracked, crops and clips scored,
aggregated per video; a folder's prediction with its progress file and submission (python -m
inference.predict)."""
