"""A tiny preprocessed dataset (crops, landmarks, diffs, folds.csv) for training tests."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from preprocess.faces.face_geometry import TEMPLATE


def make_crop_dataset(root: Path, groups: int = 4, fakes_per_group: int = 1, crops: int = 8, size: int = 40) -> Path:
    """`groups` originals with fakes; fakes carry a bright patch in the middle (easy to learn).

    Groups alternate between folds 0 and 1. Returns the folds.csv path.
    """
    rng = np.random.default_rng(0)
    rows = []
    for group in range(groups):
        original = f"real{group}"
        videos = [(original, 0)] + [(f"fake{group}_{k}", 1) for k in range(fakes_per_group)]
        for video, label in videos:
            folder = root / "crops" / video
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(crops):
                frame = index * 10
                base = np.clip(rng.normal(110 + 10 * group, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                if label:
                    base[size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 250
                    diff = np.zeros((size, size), np.uint8)
                    diff[size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 255
                    (root / "diffs" / video).mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(root / "diffs" / video / f"{frame}_0_diff.png"), diff)
                else:
                    (root / "landmarks" / video).mkdir(parents=True, exist_ok=True)
                    np.save(root / "landmarks" / video / f"{frame}_0.npy", (TEMPLATE * size).astype(np.float32))
                cv2.imwrite(str(folder / f"{frame}_0.png"), base)
                rows.append(
                    {
                        "video": video,
                        "file": f"{frame}_0.png",
                        "label": label,
                        "original": original,
                        "frame": frame,
                        "fold": group % 2,
                        "track": 0,
                    }
                )
    path = root / "folds.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
