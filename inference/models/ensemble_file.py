"""Ensemble files read without loading a model: the members a YAML file (or a named ensemble of
released weights) lists, and the checked `calibration:` block it carries. Kept free of torch so
that commands that only read or write ensemble files (inference.calibrate) start in a moment.

Members' weights are checked one by one (finite, 0 or more) and together: their sum must be a
finite number above 0. Scores are averaged with the weights divided by that sum, once
(`normalised_weights`): weights of 5e-324 each, summed as they stand, underflowed the weighted
sum (scores of 0.53 and 0.50 averaged to 1.0), and weights of 1e308 overflowed it (inf / inf).
(Written 5.0e-324 and 1.0e+308 in YAML: PyYAML, YAML 1.1, reads 5e-324 and 1e308 as text, and
the error says how to write them.)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import yaml

from common import safe_yaml
from common.bounded_numbers import number_within, shown


def read_ensemble_file(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    try:
        spec = safe_yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the ensemble file ({error})") from error
    members = spec.get("members") if isinstance(spec, dict) else None
    if not members or not isinstance(members, list):
        raise ValueError(f"{path}: expected a `members:` list of checkpoints")
    entries = []
    for index, member in enumerate(members):
        if not isinstance(member, dict) or not isinstance(member.get("checkpoint"), str):
            raise ValueError(f"{path}: member {index} has no `checkpoint` path")
        weight = member.get("weight", 1.0)
        if number_within(weight, 0) is None:  # 10**400 too: no float holds it
            raise ValueError(f"{path}: member {index}'s `weight` {shown(weight)} is not a finite number of 0 or more")
        detector = member.get("detector")
        if detector is not None and not (isinstance(detector, str) and detector):
            raise ValueError(f"{path}: member {index}'s `detector` {shown(detector)} is not a detector's name")
        checkpoint = Path(member["checkpoint"])
        entries.append(
            {
                "path": checkpoint if checkpoint.is_absolute() else path.parent / checkpoint,
                "encoder": member.get("encoder"),
                "input_size": member.get("input_size"),
                "weight": float(weight),
                "detector": detector,  # None: the project's checkpoint; else another paper's (its authors' format)
            }
        )
    normalised_weights([entry["weight"] for entry in entries], path)  # their sum refused here, naming the file
    return entries


def normalised_weights(weights: list[float], source) -> list[float]:
    """`weights` divided by their sum, so that they add up to 1; a ValueError naming `source` (the
    ensemble file, or the option that gave the models) when the sum is not a finite number above
    0. Divided by the largest first, so that weights near the ends of the float range keep their
    ratios."""
    total = sum(weights)
    if not (math.isfinite(total) and total > 0):
        raise ValueError(
            f"{source}: the members' weights add up to {total!r}; they must add up to a finite number above 0"
        )
    largest = max(weights)
    scaled = [weight / largest for weight in weights]
    scaled_total = sum(scaled)
    return [weight / scaled_total for weight in scaled]


def ensemble_calibration(spec: str | os.PathLike | None):
    """The checked `calibration:` block of ensemble file `spec` (inference/models/ensemble_calibration.py),
    or None: a named ensemble of released weights, or a file without one."""
    from inference.models.ensemble_calibration import read_calibration
    from inference.models.named_weights import ENSEMBLES

    if spec is None or (str(spec) in ENSEMBLES and not Path(spec).exists()):
        return None
    read_ensemble_file(spec)  # the members are checked first, with their own errors
    document = safe_yaml.safe_load(Path(spec).read_text())
    if "calibration" not in document:
        return None
    return read_calibration(document["calibration"], Path(spec), document["members"])


def ensemble_members(spec: str | os.PathLike) -> list[dict]:
    """The members of `spec`: a named ensemble of released checkpoints (`original`; see
    inference/models/named_weights.py, files in its weights folder) or an ensemble YAML file."""
    from inference.models.named_weights import ENSEMBLES, ensemble_entries

    if str(spec) in ENSEMBLES and not Path(spec).exists():
        return ensemble_entries(str(spec))
    return read_ensemble_file(spec)


def ensemble_detector_scale(spec: str | os.PathLike | None):
    """The MTCNN scale ensemble `spec` says its members' faces were found at, unchecked (a number or
    "rule"), or None where it says none: a named ensemble's (`original`: 0.5), else an ensemble
    file's top-level `detector_scale:`."""
    from inference.models.named_weights import ENSEMBLES

    if spec is None:
        return None
    if str(spec) in ENSEMBLES and not Path(spec).exists():
        return ENSEMBLES[str(spec)].detector_scale
    read_ensemble_file(spec)  # the members are checked first, with their own errors
    return safe_yaml.safe_load(Path(spec).read_text()).get("detector_scale")
