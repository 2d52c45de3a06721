"""Fitting an ensemble file to labelled scores: its members' weights (python -m inference.fit_ensemble)
and its calibration block (python -m inference.calibrate): where the labelled scores come from, what
a fit must pass to be stored, and what is printed and written."""
