"""The one place where the options become the detectors of a run (inference/pipeline/detector.py):
--models and --ensemble's checkpoints, loaded (inference/models/model_options.py), the frame models
into the winner's recipe and the temporal ones into the temporal recipe, both aggregating by
--strategy; the ensemble keeps the models in the order they were given."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from inference.detectors.recipes import TemporalRecipe, WinnerRecipe
from inference.models.ensemble import Member
from inference.models.model_options import load_members
from inference.pipeline.detector import Ensemble


def recipes_of(members: Sequence[Member], strategy: str = "confident") -> Ensemble:
    """The ensemble of loaded `members`: the winner's recipe for the frame models, the temporal
    recipe for the others (each where there are some)."""
    frame = [member for member in members if not member.clip]
    temporal = [member for member in members if member.clip]
    detectors = ([WinnerRecipe(frame, strategy)] if frame else []) + (
        [TemporalRecipe(temporal, strategy)] if temporal else []
    )
    return Ensemble(detectors, members)


def as_ensemble(detectors, args: argparse.Namespace) -> Ensemble:
    """An `Ensemble` as it is, or the ensemble of a list of loaded members (--strategy's)."""
    if isinstance(detectors, Ensemble):
        return detectors
    return recipes_of(list(detectors), getattr(args, "strategy", None) or "confident")


def load_detectors(args: argparse.Namespace, device: torch.device, precision: str = "f32") -> Ensemble:
    """The detectors the options ask for, their models loaded on `device` in `precision`."""
    return recipes_of(load_members(args, device, precision), getattr(args, "strategy", None) or "confident")
