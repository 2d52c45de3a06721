"""Which models score and how they run: ensemble members (loading, face probabilities), runtimes
(PyTorch, OpenVINO and its quiet import, bf16), model options, ensemble files and their calibration
blocks, named weights and their downloads (python -m inference.weights)."""
