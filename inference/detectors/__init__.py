"""The detection recipes: each an implementation of the detector interface
(inference/pipeline/detector.py) with its own frames, faces, crops, normalisation, models and
aggregation (recipes: the DFDC winner's and the temporal one; sbi, deepfakebench, gend: other
papers' released detectors, each with its crops and model modules; placed_finders: their authors'
face finders where the user placed them), and the one place where a run's options become its
detectors (options)."""
