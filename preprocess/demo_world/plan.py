"""What the demo world holds: which clips, of whom, in which part, and which fakes of each.

The plan is a pure function of the identity names, the counts and the seed; rendering a clip
depends only on its spec, so any clip can be (re)made on its own.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

FACE_SWAP = "face_swap"
SELF_BLEND = "self_blend"
PART_STRIDE = 3  # DFDC folds group 3 consecutive parts; spacing parts by 3 puts each in its own fold
MAX_PARTS = 4


@dataclass(frozen=True)
class FakeSpec:
    name: str
    method: str
    source_identity: str | None
    seed: int


@dataclass(frozen=True)
class ClipSpec:
    """A real clip and the fakes made from it; `part` is None for test clips."""

    name: str
    identity: str
    split: str
    part: int | None
    seed: int
    fakes: tuple[FakeSpec, ...]

    @property
    def names(self) -> list[str]:
        return [self.name] + [fake.name for fake in self.fakes]


def split_identities(names: list[str]) -> tuple[list[str], list[str]]:
    """Training and test identities: disjoint when there are enough, otherwise shared."""
    if len(names) < 4:
        return list(names), list(names)
    held_out = max(2, len(names) // 4)
    return list(names[:-held_out]), list(names[-held_out:])


def _unique_names(rng: np.random.Generator, count: int) -> list[str]:
    letters = np.array(list(string.ascii_lowercase))
    names: list[str] = []
    while len(names) < count:
        name = "".join(rng.choice(letters, 10)) + ".mp4"
        if name not in names:
            names.append(name)
    return names


def _plan_split(
    rng: np.random.Generator,
    names: list[str],
    identities: list[str],
    split: str,
    n_videos: int,
    n_reals: int,
) -> list[ClipSpec]:
    n_fakes = n_videos - n_reals
    n_parts = min(n_reals, MAX_PARTS)
    order = [identities[i] for i in rng.permutation(len(identities))]
    fakes_of: list[list[FakeSpec]] = [[] for _ in range(n_reals)]
    reals = [order[i % len(order)] for i in range(n_reals)]
    for j in range(n_fakes):
        real = j % n_reals
        others = [name for name in identities if name != reals[real]]
        method = SELF_BLEND if (j % 3 == 2 or not others) else FACE_SWAP
        source = str(rng.choice(others)) if method == FACE_SWAP else None
        fakes_of[real].append(FakeSpec(names.pop(), method, source, int(rng.integers(2**31))))
    return [
        ClipSpec(
            name=names.pop(),
            identity=reals[i],
            split=split,
            part=(i % n_parts) * PART_STRIDE if split == "train" else None,
            seed=int(rng.integers(2**31)),
            fakes=tuple(fakes_of[i]),
        )
        for i in range(n_reals)
    ]


def plan_world(identities: list[str], train_videos: int, test_videos: int, seed: int) -> list[ClipSpec]:
    """Training clips (a third real, the rest their fakes) and test clips (half real)."""
    if train_videos < 1:
        raise ValueError("the demo world needs at least one training video")
    if not identities:
        raise ValueError("the demo world needs at least one identity")
    rng = np.random.default_rng(seed)
    names = _unique_names(rng, train_videos + test_videos)
    train_ids, test_ids = split_identities(identities)
    clips = _plan_split(rng, names, train_ids, "train", train_videos, max(1, round(train_videos / 3)))
    if test_videos:
        clips += _plan_split(rng, names, test_ids, "test", test_videos, (test_videos + 1) // 2)
    return clips
