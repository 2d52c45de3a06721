"""The dataset layouts that come with an official split: Celeb-DF v2 and the DFDC preview (the
cross-dataset test sets), and FaceForensics++'s split files.

  celebdf  Celeb-DF v2: ROOT/Celeb-real/idA_NNNN.mp4 and ROOT/YouTube-real/NNNNN.mp4 (real),
           ROOT/Celeb-synthesis/idA_idB_NNNN.mp4 (fake: idB's face on Celeb-real/idA_NNNN);
           ROOT/List_of_testing_videos.txt lists the test split ("1 path" real, "0 path" fake,
           Celeb-DF's own convention); everything else is the train split.
  dfdcp    the DFDC preview: ROOT/dataset.json maps paths under ROOT (original_videos/ID/...,
           method_A/ID/..., method_B/ID/...) to {"label": "real"|"fake", "set": "train"|"test"};
           the folder after the first is the filmed person's id, which groups videos; a fake's
           file SSS_<person>_<scene>_NNN.mp4 also names SSS, whose face it shows.
Both name the people each video shows (preprocess/identities.py), which folds keep together.
FaceForensics++'s official split files, ROOT/splits/{train,val,test}.json (lists of id pairs
such as ["071", "054"]), are read by `ffpp_splits` for the ffpp layout.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from common.records import FAKE, REAL, VIDEO_SUFFIXES, DatasetError, VideoRecord, relative_id, safe_child
from preprocess.identities import CELEBDF_FAKE, celebdf_identities, dfdcp_identities

logger = logging.getLogger("preprocess.layouts_with_splits")

CELEBDF_TEST_LIST = "List_of_testing_videos.txt"
CELEBDF_FOLDERS = {"Celeb-real": REAL, "YouTube-real": REAL, "Celeb-synthesis": FAKE}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not readable JSON ({error})") from error


def celebdf_test_split(root: Path) -> set[str]:
    """The paths (relative to root) that List_of_testing_videos.txt names; empty if it is absent."""
    path = root / CELEBDF_TEST_LIST
    if not path.is_file():
        logger.warning("%s is missing: every Celeb-DF video is taken as training data", path)
        return set()
    listed = set()
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ("0", "1"):
            raise DatasetError(f"{path}: line {number}: expected '<1 real | 0 fake> <path>', got '{line.strip()}'")
        listed.add(safe_child(root, parts[1], path).relative_to(root).as_posix())
    return listed


def read_celebdf(root: Path) -> list[VideoRecord]:
    root = Path(root)
    test = celebdf_test_split(root)
    records = []
    for folder, label in CELEBDF_FOLDERS.items():
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
            video, original = relative_id(root, path), None
            if label == FAKE:
                match = CELEBDF_FAKE.match(path.stem)
                if match:
                    original = f"Celeb-real__{match['target']}_{match['clip']}"
                else:
                    logger.warning("%s: name does not say its original (expected idA_idB_NNNN)", path)
            split = "test" if path.relative_to(root).as_posix() in test else "train"
            method = folder if label == FAKE else None
            identities = celebdf_identities(path.stem)
            records.append(
                VideoRecord(video, path, label, original, original or video, folder, split, method, identities)
            )
    if not records:
        raise DatasetError(f"{root}: no videos under {', '.join(CELEBDF_FOLDERS)}")
    missing = sorted(test - {record.path.relative_to(root).as_posix() for record in records})
    if missing:
        logger.warning(
            "%s: %d of its %d videos are not on disk (%s%s): the test split is scored without them",
            root / CELEBDF_TEST_LIST,
            len(missing),
            len(test),
            ", ".join(missing[:3]),
            ", ..." if len(missing) > 3 else "",
        )
    return records


def read_dfdc_preview(root: Path) -> list[VideoRecord]:
    root = Path(root)
    described = root / "dataset.json"
    entries = _read_json(described)
    if not isinstance(entries, dict):
        raise DatasetError(f"{described}: expected an object mapping video paths to entries")
    records = []
    for name, entry in sorted(entries.items()):
        path = safe_child(root, name, described)
        label = str(entry.get("label", "")).lower() if isinstance(entry, dict) else ""
        if label not in ("real", "fake"):
            raise DatasetError(f"{described}: entry '{name}': label must be real or fake, got {entry!r}")
        split = str(entry.get("set", "train")).lower()
        if split not in ("train", "test"):
            raise DatasetError(f"{described}: entry '{name}': set must be train or test, got {entry.get('set')!r}")
        if not path.is_file():
            logger.warning("%s: listed in %s but not on disk, skipped", path, described)
            continue
        relative = path.relative_to(root)
        identities = dfdcp_identities(relative.as_posix())
        person = identities[0] if identities else relative_id(root, path)
        is_fake = label == "fake"
        method = relative.parts[0] if is_fake else None
        records.append(
            VideoRecord(
                relative_id(root, path),
                path,
                FAKE if is_fake else REAL,
                None,
                person,
                relative.parts[0],
                split,
                method,
                identities,
            )
        )
    if not records:
        raise DatasetError(f"{described}: none of its videos is on disk")
    return records


FFPP_SPLIT_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}


def ffpp_splits(root: Path) -> dict[str, str] | None:
    """{video id ("071", or a fake's "071_054"): split} from ROOT/splits/*.json; None if absent."""
    folder = Path(root) / "splits"
    if not any((folder / name).is_file() for name in FFPP_SPLIT_FILES.values()):
        return None
    splits: dict[str, str] = {}
    for split, name in FFPP_SPLIT_FILES.items():
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing (FaceForensics++'s split files come as train, val and test)")
        pairs = _read_json(path)
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise DatasetError(f'{path}: expected a list of id pairs such as ["071", "054"]')
        for first, second in pairs:
            for video in (first, second, f"{first}_{second}", f"{second}_{first}"):
                if splits.setdefault(str(video), split) != split:
                    raise DatasetError(f"{path}: {video} is also in the {splits[str(video)]} split")
    return splits
