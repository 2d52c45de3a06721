"""Where preprocessing outputs live under the output root, and how crop files are named.

boxes/{video}.json                      {frame_index: [[x1, y1, x2, y2], ...] | null}, frame pixels
crops/{video}/{frame}_{face}.png        face crops
landmarks/{video}/{frame}_{face}.npy    5 MTCNN points (x, y) in crop pixels, float32
diffs/{fake}/{frame}_{face}_diff.png    (1 - SSIM(original crop, fake crop)) * 255, grey
tracks/{video}.json                     {frame_index: [track of each face]}, preprocess/faces/tracks.py
folds.csv                               video,file,label,original,frame,fold,track
"""

from __future__ import annotations

import json
from pathlib import Path


def boxes_path(root: Path, video: str) -> Path:
    return Path(root) / "boxes" / f"{video}.json"


def crops_dir(root: Path, video: str) -> Path:
    return Path(root) / "crops" / video


def landmarks_dir(root: Path, video: str) -> Path:
    return Path(root) / "landmarks" / video


def diffs_dir(root: Path, video: str) -> Path:
    return Path(root) / "diffs" / video


def crop_name(frame: int, face: int) -> str:
    return f"{frame}_{face}.png"


def parse_crop_name(name: str) -> tuple[int, int]:
    """(frame, face) of a crop file name such as '120_0.png'."""
    frame, face = Path(name).stem.split("_")[:2]
    return int(frame), int(face)


def read_boxes(path: Path) -> dict[int, list[list[float]] | None]:
    return {int(frame): boxes for frame, boxes in json.loads(Path(path).read_text()).items()}
