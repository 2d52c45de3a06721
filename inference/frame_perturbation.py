"""predict's `--perturb NAME:LEVEL`: one of DeeperForensics-1.0's distortions (inference/perturbations.py)
on the sampled frames of every video, after decoding and before face detection, so that the faces
found and scored are those of the distorted video.

The frames distorted are the ones predict samples (`--frames`, evenly spaced), in frame order, as
one clip: the frame-wise distortions draw their randomness frame after frame, and VC re-encodes
the sampled frames as one H.264 clip at the video's frame rate (30 where it states none). Sampled
frames lie further apart than consecutive ones, so VC's motion prediction works across larger
changes than in the reference, which re-encodes the whole video; what it costs a face is
comparable, not identical.

`mixed` chains 2 to 4 different distortions of DeeperForensics-1.0's seven (CS CC BW GNC GB resize
VC; not the true JPEG), in random order, as the reference's perturbation/README.md has a mixed
video made (its script run again on its own output, no type twice); where the reference also
draws each step's level at random, here every step is at the given LEVEL, so that a robustness
curve of `mixed` has one level per point like the others.

Each video's randomness comes from `perturbation_seed(--perturb-seed, filename, NAME, LEVEL)`,
where filename is the video's path under --test-dir (its submission filename): the same video gets
the same distortion wherever the folder holding it lies. The chain of `mixed` (which distortions,
how many, in what order) comes from `perturbation_seed(--perturb-seed, filename)` alone: a video
keeps its chain at every level, so that only the level changes along the curve.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from inference.perturbations import ALL_DISTORTIONS, LEVELS, MIXED, perturb_clip, perturbation_seed

NAMES = (*ALL_DISTORTIONS, MIXED)
DEFAULT_FPS = 30.0  # a video (or photo) whose container states no frame rate
# Raised when a distortion gives other frames for the same name, level, seed and video, so that
# predictions cached under it (inference/evaluate) are made again. mixed 2: one chain per video at
# every level, drawn from DeeperForensics-1.0's seven.
REVISIONS = {MIXED: 2}


def canonical_name(name: str) -> str:
    """The distortion's name as inference/perturbations.py spells it (given in any case)."""
    found = {known.lower(): known for known in NAMES}.get(str(name).strip().lower())
    if found is None:
        raise ValueError(f"unknown distortion {name!r}: known are {', '.join(NAMES)}")
    return found


def revision(text: str) -> int:
    """The revision of --perturb NAME:LEVEL's distortion (1 for one never changed)."""
    return REVISIONS.get(canonical_name(str(text).partition(":")[0]), 1)


def check_level(level) -> int:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or int(level) not in LEVELS:
        raise ValueError(f"distortion level must be a whole number from {LEVELS[0]} to {LEVELS[-1]}, got {level!r}")
    return int(level)


def perturb_argument(text: str) -> str:
    """argparse type of --perturb: NAME:LEVEL, returned as 'NAME:LEVEL' with the name's own spelling."""
    name, colon, level = str(text).partition(":")
    try:
        if not colon or not level.strip().isdigit():
            raise ValueError(f"expected NAME:LEVEL (e.g. GB:3), got {text!r}; names: {', '.join(NAMES)}")
        return f"{canonical_name(name)}:{check_level(int(level))}"
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@dataclass(frozen=True)
class FramePerturbation:
    name: str
    level: int
    seed: int = 0

    @classmethod
    def parse(cls, text: str, seed: int = 0) -> FramePerturbation:
        name, level = perturb_argument(text).split(":")
        return cls(name, int(level), int(seed))

    def video_seed(self, video_id: str) -> int:
        """The seed of one video's distortion: its filename under --test-dir, never its folder."""
        return perturbation_seed(self.seed, video_id, self.name, self.level)

    def chain_seed(self, video_id: str) -> int:
        """The seed of one video's `mixed` chain: without the level, so each level has the same chain."""
        return perturbation_seed(self.seed, video_id)

    def apply(self, decoded: dict[int, np.ndarray], video_id: str, fps: float) -> tuple[dict[int, np.ndarray], dict]:
        """The sampled frames ({frame index: RGB frame}) distorted as one clip, in frame order, and
        what was done (for details.jsonl): name, level, base seed and the steps applied."""
        indices = sorted(decoded)
        frames, steps = perturb_clip(
            [decoded[index] for index in indices],
            self.name,
            self.level,
            seed=self.video_seed(video_id),
            fps=fps if fps and fps > 0 else DEFAULT_FPS,
            chain_seed=self.chain_seed(video_id),
        )
        applied = {"name": self.name, "level": self.level, "seed": self.seed, "steps": [list(s) for s in steps]}
        return dict(zip(indices, frames, strict=True)), applied


def frame_perturbation(args: argparse.Namespace) -> FramePerturbation | None:
    """The --perturb of a command's options, or None (also for commands without the option)."""
    text = getattr(args, "perturb", None)
    return None if text is None else FramePerturbation.parse(text, getattr(args, "perturb_seed", 0))
