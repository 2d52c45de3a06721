"""The verdict on one file, for people: verdict text and JSON, verdict rule, explanations, the web page
and its judging worker, upload checks (python -m inference.detect, python -m inference.app)."""
