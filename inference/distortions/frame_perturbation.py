"""predict's `--perturb NAME:LEVEL`: one of DeeperForensics-1.0's distortions (inference/distortions/perturbations.py)
on the sampled frames of every video, after decoding and before face detection, so that the faces
found and scored are those of the distorted video.

The frames distorted are the ones predict samples (`--frames`, evenly spaced), in frame order, as
one clip: the frame-wise distortions draw their randomness frame after frame. VC re-encodes as the
reference does, which writes the whole video with libx264: each sampled frame is encoded with the
consecutive frames around it (VC_FRAMES_BEFORE before it, VC_FRAMES_AFTER after it: enough that
its place in the GOP and x264's lookahead are as in the whole video), windows that overlap or
touch being one clip, at the video's frame rate (30 where it states none); 32 frames of a
300-frame video thus re-encode the whole video. A chain holding VC (`mixed`) runs every step on
those frames, as the reference runs each on the whole video. Encoding the 32 sampled frames as a
clip of their own, as this did before, left x264 little to predict between frames 10 apart: 1.2
to 2.0 dB PSNR below the whole-video encode on the sample clips; now 0.1 to 0.45 dB below it, the
difference of mbtree (docs/robustness.md). It costs an H.264 encode of
the video: about 10 s for 300 frames of 720p on one core.

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
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from inference.distortions.perturbations import (
    ALL_DISTORTIONS,
    DISTORTIONS,
    H264_CRFS,
    LEVELS,
    MIXED,
    H264Encoder,
    distortion_steps,
    iter_decoded,
    level_parameter,
    perturb_clip,
    perturbation_seed,
)

NAMES = (*ALL_DISTORTIONS, MIXED)
DEFAULT_FPS = 30.0  # a video (or photo) whose container states no frame rate
# Raised when a distortion gives other frames for the same name, level, seed and video, so that
# predictions cached under it (inference/evaluate) are made again. mixed 2: one chain per video at
# every level, drawn from DeeperForensics-1.0's seven; 3 (and VC 2): VC on the consecutive frames
# around the sampled ones, as the reference's whole-video encode.
REVISIONS = {MIXED: 3, "VC": 2}
# VC's window around each sampled frame. With mbtree off (inference/distortions/perturbations.py) x264's
# quality falls along a GOP after its key frame: a frame 25 after the window's first came out up to
# 0.57 dB above the same frame of the whole-video encode (CRF 40, the 720p sample), 100 after it
# within 0.07 dB. The 50 after it cover x264's lookahead at preset medium (rc-lookahead 40) and
# its B-frames.
VC_FRAMES_BEFORE = 100
VC_FRAMES_AFTER = 50


@dataclass(frozen=True)
class VideoSource:
    """The video sampled frames come from, for VC to re-encode the frames around them."""

    read: Callable[[list[int]], Iterable[tuple[int, np.ndarray]]]  # (index, RGB frame) of these indices, in order
    frame_count: int  # as the container states it


def compression_windows(
    sampled: Iterable[int], frame_count: int, before: int = VC_FRAMES_BEFORE, after: int = VC_FRAMES_AFTER
) -> list[range]:
    """The consecutive frames VC encodes together: `before` frames before each sampled frame and
    `after` after it, within the video's `frame_count`; windows that overlap or touch are one."""
    windows: list[range] = []
    for index in sorted(set(sampled)):
        start, stop = max(0, index - before), max(index + 1, min(frame_count, index + after + 1))
        if windows and start <= windows[-1].stop:
            windows[-1] = range(windows[-1].start, max(stop, windows[-1].stop))
        else:
            windows.append(range(start, stop))
    return windows


def _frame_step(name: str, level: int, rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    return DISTORTIONS[name](frame, level, rng)


def compress_window(
    frames: Iterable[tuple[int, np.ndarray]],
    steps: list[tuple[str, int]],
    rng: np.random.Generator,
    fps: float,
    keep: set[int],
) -> dict[int, np.ndarray]:
    """{index: frame} of the `keep` frames of one window of consecutive `frames` after `steps`,
    which hold VC once: the steps before it on every frame as it is read, the window H.264-encoded
    as one clip (a frame at a time: never all in memory), the steps after it on the kept frames."""
    position = [name for name, _ in steps].index("VC")
    before, after = steps[:position], steps[position + 1 :]
    encoder = H264Encoder(level_parameter(H264_CRFS, steps[position][1]), fps)
    read, size = [], None
    try:
        for index, frame in frames:
            for name, level in before:
                frame = _frame_step(name, level, rng, frame)
            size = size or frame.shape[:2]
            encoder.add(frame)
            read.append(index)
    except BaseException:
        encoder.close()
        raise
    kept = {}
    decoded = iter_decoded(encoder.finish())
    for index, frame in itertools.zip_longest(read, decoded):
        if index is None or frame is None:
            raise RuntimeError(f"VC: the H.264 round trip of {len(read)} frames gave another number")
        if index in keep:
            frame = frame[: size[0], : size[1]]
            for name, level in after:
                frame = _frame_step(name, level, rng, frame)
            kept[index] = frame
    return kept


def compressed_as_reference(
    indices: list[int], steps: list[tuple[str, int]], rng: np.random.Generator, fps: float, source: VideoSource
) -> list[np.ndarray]:
    """The sampled frames `indices` after `steps` (VC among them), each encoded with the
    consecutive frames around it (`compression_windows`), read once from `source`."""
    windows = compression_windows(indices, max(source.frame_count, indices[-1] + 1))
    window_of = {index: number for number, window in enumerate(windows) for index in window}
    wanted = sorted(window_of)
    kept: dict[int, np.ndarray] = {}
    for _, frames in itertools.groupby(source.read(wanted), key=lambda item: window_of[item[0]]):
        kept.update(compress_window(frames, steps, rng, fps, set(indices)))
    missing = [index for index in indices if index not in kept]
    if missing:
        raise RuntimeError(f"VC: sampled frame {missing[0]} could not be read again to be re-encoded")
    return [kept[index] for index in indices]


def canonical_name(name: str) -> str:
    """The distortion's name as inference/distortions/perturbations.py spells it (given in any case)."""
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

    def apply(
        self, decoded: dict[int, np.ndarray], video_id: str, fps: float, source: VideoSource | None = None
    ) -> tuple[dict[int, np.ndarray], dict]:
        """The sampled frames ({frame index: RGB frame}) distorted, in frame order, and what was done
        (for details.jsonl): name, level, base seed and the steps applied. With VC among the steps
        and the video as `source`, each frame is encoded with the frames around it (as the
        reference encodes the whole video); without a source, the frames given are the clip."""
        indices = sorted(decoded)
        fps = fps if fps and fps > 0 else DEFAULT_FPS
        seed, chain_seed = self.video_seed(video_id), self.chain_seed(video_id)
        rng = np.random.default_rng(seed)  # as perturb_clip's: the chain comes from chain_seed, not from it
        steps = distortion_steps(self.name, self.level, rng, chain_seed)
        if source is not None and any(name == "VC" for name, _ in steps):
            frames = compressed_as_reference(indices, steps, rng, fps, source)
        else:
            frames, steps = perturb_clip(
                [decoded[index] for index in indices], self.name, self.level, seed=seed, fps=fps, chain_seed=chain_seed
            )
        applied = {"name": self.name, "level": self.level, "seed": self.seed, "steps": [list(s) for s in steps]}
        return dict(zip(indices, frames, strict=True)), applied


def frame_perturbation(args: argparse.Namespace) -> FramePerturbation | None:
    """The --perturb of a command's options, or None (also for commands without the option)."""
    text = getattr(args, "perturb", None)
    return None if text is None else FramePerturbation.parse(text, getattr(args, "perturb_seed", 0))
