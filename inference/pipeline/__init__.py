"""One video's faces and scores: the detector interface (detector.py: what a detection recipe is
and the ensemble of a run's recipes), frames read ahead, faces found and tracked, crops and clips,
face scores aggregated. The recipes themselves are in inference/detectors/, predict over a folder in
inference/prediction/."""
