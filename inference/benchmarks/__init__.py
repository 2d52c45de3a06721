"""Speed and fidelity benchmarks: per video and stage (python -m inference.bench), whole commands, the
original's code as a baseline, hostile inputs, sharp checkpoints, the report."""
