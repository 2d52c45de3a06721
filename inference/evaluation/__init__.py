"""Evaluations of models on datasets: protocols (python -m inference.evaluate), cached predictions,
robustness to distortions, timeliness, the demo's summary."""
