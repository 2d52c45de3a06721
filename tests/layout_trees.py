"""Benchmark datasets' trees as they come, with their own file names, filled with tiny clips (or
empty files where only the names matter)."""

from __future__ import annotations

import json
from pathlib import Path

# Celeb-DF v2: Celeb-real/idA_NNNN, YouTube-real/NNNNN, Celeb-synthesis/idA_idB_NNNN (idB's face
# on idA's clip); List_of_testing_videos.txt says "1 path" for a real video, "0 path" for a fake.
CELEBDF_VIDEOS = {
    "Celeb-real/id0_0000.mp4": 0,
    "Celeb-real/id1_0000.mp4": 0,
    "YouTube-real/00000.mp4": 0,
    "YouTube-real/00170.mp4": 0,
    "Celeb-synthesis/id0_id1_0000.mp4": 1,
    "Celeb-synthesis/id0_id16_0000.mp4": 1,
    "Celeb-synthesis/id1_id0_0000.mp4": 1,
}
CELEBDF_TEST = ["YouTube-real/00170.mp4", "Celeb-real/id1_0000.mp4", "Celeb-synthesis/id0_id16_0000.mp4"]
CELEBDF_TEST += ["Celeb-synthesis/id1_id0_0000.mp4"]

# FaceForensics++: originals NNN, fakes TTT_SSS under each method (the same name in every method)
FFPP_VIDEOS = {
    "original_sequences/youtube/c23/videos/000.mp4": 0,
    "original_sequences/youtube/c23/videos/003.mp4": 0,
    "original_sequences/youtube/c23/videos/004.mp4": 0,
    "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4": 1,
    "manipulated_sequences/Deepfakes/c23/videos/003_000.mp4": 1,
    "manipulated_sequences/Deepfakes/c23/videos/004_982.mp4": 1,
    "manipulated_sequences/Face2Face/c23/videos/000_003.mp4": 1,
}
FFPP_SPLITS = {"train": [["004", "982"]], "val": [], "test": [["000", "003"]]}
FFPP_TEST = [name for name in FFPP_VIDEOS if "004" not in name]


def write_clip(path: Path, variant: int, frames: int = 3) -> None:
    """A clip of a face photo (128 px wide), a little different for each variant."""
    import cv2
    import numpy as np

    from common.video_writer import VideoWriter
    from preprocess.demo_world.identities import builtin_photos

    photos = builtin_photos()
    photo = photos[sorted(photos)[variant % 2]]
    height = 2 * (64 * photo.shape[0] // photo.shape[1])
    image = cv2.resize(photo, (128, height), interpolation=cv2.INTER_AREA)
    if variant % 3 == 1:
        image = image[:, ::-1].copy()
    image = np.clip(image.astype(np.int16) + 12 * (variant % 4) - 18, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=25, width=128, height=height, crf=18) as writer:
        for _ in range(frames):
            writer.write(image)


def _fill(root: Path, names, clips: bool) -> Path:
    for variant, name in enumerate(sorted(names)):
        if clips:
            write_clip(root / name, variant)
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"")
    return root


def celebdf_tree(root: Path, clips: bool = False) -> Path:
    _fill(root, CELEBDF_VIDEOS, clips)
    listed = [f"{1 - CELEBDF_VIDEOS[name]} {name}" for name in CELEBDF_TEST]  # Celeb-DF's 1 = real
    (root / "List_of_testing_videos.txt").write_text("\n".join(listed) + "\n")
    return root


def ffpp_tree(root: Path, clips: bool = False) -> Path:
    _fill(root, FFPP_VIDEOS, clips)
    (root / "splits").mkdir(parents=True, exist_ok=True)
    for split, pairs in FFPP_SPLITS.items():
        (root / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    return root


def write_person_clip(path: Path, person: int, take: int, fake: bool, frames: int = 30) -> None:
    """A 320 x 240 clip of one of the two photos the packages ship, placed and tinted by `person`
    and moving a little by `take`; a fake's face carries a bright square (a crude manipulation
    that a model can learn in a few steps)."""
    import cv2
    import numpy as np

    from common.video_writer import VideoWriter
    from preprocess.demo_world.identities import builtin_photos

    photos = builtin_photos()
    face = cv2.resize(photos[sorted(photos)[person % 2]], (150, 160), interpolation=cv2.INTER_AREA)
    face = np.clip(face.astype(np.int16) + 9 * (person % 5) - 18, 0, 255).astype(np.uint8)
    if fake:
        face[60:100, 55:95] = (250, 240, 230)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=25, width=320, height=240, crf=20) as writer:
        for index in range(frames):
            frame = np.full((240, 320, 3), 40 + 20 * (person % 4), np.uint8)
            left, top = 60 + 10 * (person % 3) + (index + take) % 8, 40 + take % 5
            frame[top : top + 160, left : left + 150] = face
            writer.write(frame)


# Celeb-DF v2 as it is organised: people idA with several videos each, swaps idA_idB_NNNN (B's face
# on A's video) only within pairs of people (so folds can keep each pair together), YouTube reals,
# and a test list of one pair of its own.
CELEBDF_PAIRS = [(0, 1), (2, 3), (4, 5), (6, 7)]
CELEBDF_TEST_PAIR = (6, 7)


def celebdf_people_tree(root: Path, takes: int = 2) -> Path:
    """A Celeb-DF-v2 tree of generated clips: per pair of people, `takes` real videos of each and
    `takes` swaps each way; three YouTube reals; List_of_testing_videos.txt names the last pair's
    videos and one YouTube real (Celeb-DF's "1 path" is a real video)."""
    test = []
    for a, b in CELEBDF_PAIRS:
        for take in range(takes if (a, b) != CELEBDF_TEST_PAIR else 1):
            for person, other in ((a, b), (b, a)):
                real, fake = (
                    f"Celeb-real/id{person}_{take:04d}.mp4",
                    f"Celeb-synthesis/id{person}_id{other}_{take:04d}.mp4",
                )
                write_person_clip(root / real, person, take, fake=False)
                write_person_clip(root / fake, person, take, fake=True)
                if (a, b) == CELEBDF_TEST_PAIR:
                    test += [f"1 {real}", f"0 {fake}"]
    for index in range(3):
        write_person_clip(root / f"YouTube-real/{index:05d}.mp4", 8 + index, index, fake=False)
    test.append("1 YouTube-real/00002.mp4")
    (root / "List_of_testing_videos.txt").write_text("\n".join(test) + "\n")
    return root
