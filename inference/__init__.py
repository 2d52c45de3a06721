"""Inference: per-video prediction, frame aggregation, ensembling, offline scoring, benchmarks."""
