"""Dataset adapters: every supported layout becomes a list of `VideoRecord`s.

Layouts (picked automatically, or with --layout):
  dfdc     ROOT/dfdc_train_part_K/{*.mp4, metadata.json}; metadata maps a file name to
           {"label": "REAL"|"FAKE", "split": ..., "original": "<file>.mp4"|null} (and, where
           known, "method": how the fake was made; the demo world writes it)
  ffpp     FaceForensics++: ROOT/original_sequences/<source>/<quality>/videos/NNN.mp4 and
           ROOT/manipulated_sequences/<Method>/<quality>/videos/TTT_SSS.mp4 (original = TTT);
           ids are <source|Method>-<quality>-<name>; ROOT/splits/{train,val,test}.json, where
           present, give the official split (without them, a warning: folds are a k-fold instead)
  celebdf  Celeb-DF v2 (Celeb-real/, YouTube-real/, Celeb-synthesis/, List_of_testing_videos.txt)
  dfdcp    the DFDC preview (dataset.json); both described in preprocess/layouts_with_splits.py
  csv      ROOT/*.csv with columns path,label[,original][,group][,method]; paths relative to
           ROOT; label REAL/FAKE or 0/1 (1 = fake); original = the path of another row; rows
           of one group (any name) share a fold, with their originals and their fakes
  splits   ROOT/{train,valid,test}/{real,fake}/* (the "140k real and fake faces" set, also found
           under ROOT/real_vs_fake/real-vs-fake/): photos (or videos), split by their folders
  folders  ROOT/real/** and ROOT/fake/** (videos, or photos as one-frame videos); no originals

A photo is a video of one frame. Datasets whose photos are already face crops (the 140k set)
want `faces_are_cropped: true` in the preprocessing config: the whole image is the face.

`python -m preprocess.datasets --root-dir R` prints what a dataset holds.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

from common import cli
from common.records import (
    FAKE,
    REAL,
    VIDEO_SUFFIXES,
    DatasetError,
    VideoRecord,
    media_files,
    relative_id,
    safe_child,
)
from preprocess.identities import FFPP_DFD_FAKE, FFPP_FAKE, ffpp_identities
from preprocess.layouts_with_splits import CELEBDF_FOLDERS, ffpp_splits, read_celebdf, read_dfdc_preview

logger = logging.getLogger("preprocess.datasets")

DFDC_PART = re.compile(r"^dfdc_train_part_(\d+)$")


def dfdc_part_number(folder: Path) -> int | None:
    match = DFDC_PART.match(folder.name)
    return int(match.group(1)) if match else None


def _read_dfdc_metadata(metadata_path: Path) -> dict:
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{metadata_path}: not readable JSON ({error})") from error
    if not isinstance(metadata, dict):
        raise DatasetError(f"{metadata_path}: expected an object mapping file names to entries")
    return metadata


def read_dfdc(root: Path) -> list[VideoRecord]:
    """Records of every video listed in dfdc_train_part_*/metadata.json that is on disk."""
    root = Path(root)
    parts = sorted((p for p in root.iterdir() if p.is_dir() and dfdc_part_number(p) is not None), key=dfdc_part_number)
    if not parts:
        raise DatasetError(f"{root}: no dfdc_train_part_K folders")
    records: list[VideoRecord] = []
    seen: dict[str, Path] = {}
    for part in parts:
        metadata_path = part / "metadata.json"
        if not metadata_path.is_file():
            raise DatasetError(f"{metadata_path}: missing (every DFDC part has one)")
        for name, entry in _read_dfdc_metadata(metadata_path).items():
            path = safe_child(part, name, metadata_path)
            if not isinstance(entry, dict) or entry.get("label") not in ("REAL", "FAKE"):
                raise DatasetError(f"{metadata_path}: entry '{name}': label must be REAL or FAKE, got {entry!r}")
            original = entry.get("original")
            if entry["label"] == "FAKE":
                if not isinstance(original, str) or not original:
                    raise DatasetError(f"{metadata_path}: entry '{name}': a FAKE needs its original's file name")
                safe_child(part, original, metadata_path)
            video = Path(name).stem
            if video in seen:
                raise DatasetError(f"{metadata_path}: entry '{name}' is listed again (first in {seen[video]})")
            seen[video] = metadata_path
            if not path.is_file():
                logger.warning("%s: listed in %s but not on disk, skipped", path, metadata_path)
                continue
            original_id = Path(original).stem if entry["label"] == "FAKE" else None
            records.append(
                VideoRecord(
                    video=video,
                    path=path,
                    label=FAKE if entry["label"] == "FAKE" else REAL,
                    original=original_id,
                    group=original_id or video,
                    source=part.name,
                    method=entry.get("method") if entry["label"] == "FAKE" else None,
                )
            )
    return records


CSV_REQUIRED = {"path", "label"}


def _ffpp_videos(folder: Path) -> list[tuple[str, str, Path]]:
    """(name, quality, path) of videos under <name>/<quality>/videos/."""
    found = []
    for named in sorted(p for p in folder.iterdir() if p.is_dir()):
        for quality in sorted(p for p in named.iterdir() if p.is_dir()):
            videos = quality / "videos"
            if videos.is_dir():
                found += [
                    (named.name, quality.name, v)
                    for v in sorted(videos.iterdir())
                    if v.suffix.lower() in VIDEO_SUFFIXES
                ]
    return found


def read_ffpp(root: Path) -> list[VideoRecord]:
    root = Path(root)
    originals_dir, manipulated_dir = root / "original_sequences", root / "manipulated_sequences"
    if not originals_dir.is_dir() and not manipulated_dir.is_dir():
        raise DatasetError(f"{root}: no original_sequences/ or manipulated_sequences/ folder")
    records = []
    splits = ffpp_splits(root) or {}
    originals: dict[tuple[str, str], str] = {}  # (quality, stem) -> id
    for source, quality, path in _ffpp_videos(originals_dir) if originals_dir.is_dir() else []:
        video = f"{source}-{quality}-{path.stem}"
        originals[(quality, path.stem)] = video
        identities = ffpp_identities(path.stem)
        records.append(VideoRecord(video, path, REAL, None, video, "original", splits.get(path.stem), None, identities))
    for method, quality, path in _ffpp_videos(manipulated_dir) if manipulated_dir.is_dir() else []:
        video = f"{method}-{quality}-{path.stem}"
        if match := FFPP_FAKE.match(path.stem):
            original = originals.get((quality, match["target"]), f"youtube-{quality}-{match['target']}")
        elif match := FFPP_DFD_FAKE.match(path.stem):
            original = f"actors-{quality}-{match['actors']}__{match['scene']}"
        else:
            original = None
            logger.warning("%s: name does not say its original (expected TTT_SSS.mp4)", path)
        split = splits.get(path.stem)
        identities = ffpp_identities(path.stem)
        records.append(VideoRecord(video, path, FAKE, original, original or video, method, split, method, identities))
    if not records:
        raise DatasetError(f"{root}: no videos under */<quality>/videos/ in the FaceForensics++ folders")
    if splits:
        outside = sum(record.split is None for record in records)
        logger.info("FaceForensics++ split files: %d videos in none of them (left out of folds)", outside)
    else:
        logger.warning(
            "%s: no FaceForensics++ split files (train.json, val.json, test.json): published results use the "
            "official split; folds are a k-fold on the people the videos show instead",
            root / "splits",
        )
    return records


def _csv_label(value: str, csv_path: Path, line: int) -> int:
    text = (value or "").strip().upper()
    if text in {"REAL", "0"}:
        return REAL
    if text in {"FAKE", "1"}:
        return FAKE
    raise DatasetError(f"{csv_path}: line {line}: label must be REAL/FAKE or 0/1, got '{value}'")


def find_dataset_csv(root: Path) -> Path | None:
    for candidate in sorted(Path(root).glob("*.csv"), key=lambda p: (p.name != "dataset.csv", p.name)):
        with open(candidate, newline="") as handle:
            header = next(csv.reader(handle), [])
        if {column.strip() for column in header} >= CSV_REQUIRED:
            return candidate
    return None


def read_csv_dataset(root: Path) -> list[VideoRecord]:
    root = Path(root)
    csv_path = find_dataset_csv(root)
    if csv_path is None:
        raise DatasetError(f"{root}: no CSV with columns path,label")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids_by_path: dict[str, str] = {}
    parsed = []
    for line, row in enumerate(rows, start=2):
        name = (row.get("path") or "").strip()
        path = safe_child(root, name, csv_path)
        video = relative_id(root, path)
        if name in ids_by_path:
            raise DatasetError(f"{csv_path}: line {line}: '{name}' is listed twice")
        ids_by_path[name] = video
        parsed.append((line, row, path, video, _csv_label(row.get("label"), csv_path, line)))
    records = []
    for line, row, path, video, label in parsed:
        original_name = (row.get("original") or "").strip()
        original = None
        if original_name:
            original = ids_by_path.get(original_name) or relative_id(root, safe_child(root, original_name, csv_path))
        if not path.is_file():
            logger.warning("%s: line %d: %s is not on disk, skipped", csv_path, line, path)
            continue
        group = (row.get("group") or "").strip() or original or video
        source = path.parent.name if path.parent != root else "csv"
        method = ((row.get("method") or "").strip() or None) if label == FAKE else None
        records.append(
            VideoRecord(video, path, label, original if label == FAKE else None, group, source, None, method)
        )
    return records


def read_folders(root: Path) -> list[VideoRecord]:
    root = Path(root)
    records = []
    for label_name, label in (("real", REAL), ("fake", FAKE)):
        folder = root / label_name
        if not folder.is_dir():
            continue
        for path in media_files(folder):
            video = relative_id(root, path)
            records.append(VideoRecord(video, path, label, None, video, label_name))
    if not records:
        raise DatasetError(f"{root}: no videos or photos under real/ or fake/")
    return records


SPLITS = ("train", "valid", "test")


def splits_base(root: Path) -> Path | None:
    """The folder that holds train/valid/test, each with real/ and fake/ (None if there is none)."""
    for base in (root / "real_vs_fake" / "real-vs-fake", root / "real-vs-fake", root):
        if any((base / split / label).is_dir() for split in SPLITS for label in ("real", "fake")):
            return base
    return None


def read_splits(root: Path) -> list[VideoRecord]:
    root = Path(root)
    base = splits_base(root)
    if base is None:
        raise DatasetError(f"{root}: no {{train,valid,test}}/{{real,fake}}/ folders")
    records = []
    for split in SPLITS:
        for label_name, label in (("real", REAL), ("fake", FAKE)):
            folder = base / split / label_name
            if folder.is_dir():
                for path in media_files(folder):
                    video = relative_id(base, path)
                    records.append(VideoRecord(video, path, label, None, video, label_name, split))
    if not records:
        raise DatasetError(f"{base}: no videos or photos under {{train,valid,test}}/{{real,fake}}/")
    return records


LAYOUTS = {
    "dfdc": read_dfdc,
    "ffpp": read_ffpp,
    "celebdf": read_celebdf,
    "dfdcp": read_dfdc_preview,
    "csv": read_csv_dataset,
    "splits": read_splits,
    "folders": read_folders,
}


def detect_layout(root: Path) -> str:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if any(dfdc_part_number(p) is not None for p in root.iterdir() if p.is_dir()):
        return "dfdc"
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        return "ffpp"
    if any((root / folder).is_dir() for folder in CELEBDF_FOLDERS):
        return "celebdf"
    if (root / "dataset.json").is_file():
        return "dfdcp"
    if find_dataset_csv(root) is not None:
        return "csv"
    if splits_base(root) is not None:
        return "splits"
    if (root / "real").is_dir() or (root / "fake").is_dir():
        return "folders"
    raise DatasetError(
        f"{root}: layout not recognised; expected dfdc_train_part_K/ folders (DFDC), original_sequences/ and "
        "manipulated_sequences/ (FaceForensics++), Celeb-real/ and Celeb-synthesis/ (Celeb-DF v2), dataset.json "
        "(the DFDC preview), a CSV with columns path,label, train/valid/test folders with "
        "real/ and fake/ in each, or real/ and fake/ folders"
    )


def load_dataset(root: Path, layout: str | None = None) -> list[VideoRecord]:
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout '{layout}'; choose one of {', '.join(LAYOUTS)}")
    return LAYOUTS[layout](Path(root))


def summarize(records: list[VideoRecord]) -> dict:
    ids = {record.video for record in records}
    missing_originals = sorted({r.original for r in records if r.is_fake and r.original not in ids})
    return {
        "videos": len(records),
        "real": sum(not r.is_fake for r in records),
        "fake": sum(r.is_fake for r in records),
        "groups": len({r.group for r in records}),
        "by_source": dict(sorted(Counter(r.source for r in records).items())),
        **(
            {"by_split": dict(sorted(Counter(r.split for r in records).items()))}
            if any(r.split for r in records)
            else {}
        ),
        "fakes_without_original": sum(r.is_fake and r.original not in ids for r in records),
        "missing_originals": missing_originals,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.datasets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root-dir", type=Path, required=True, help="dataset root")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default=None, help="default: detected")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        layout = args.layout or detect_layout(args.root_dir)
        summary = summarize(load_dataset(args.root_dir, layout))
    except DatasetError as error:
        return cli.fail(error)
    logger.info(
        "%s (%s layout): %d videos, %d real, %d fake, %d groups",
        args.root_dir,
        layout,
        summary["videos"],
        summary["real"],
        summary["fake"],
        summary["groups"],
    )
    for source, count in summary["by_source"].items():
        logger.info("  %-24s %d videos", source, count)
    if summary["fakes_without_original"]:
        logger.info(
            "  %d fakes whose original is not in the dataset (their faces come from their own frames)",
            summary["fakes_without_original"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
