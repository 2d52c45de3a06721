"""Step 5: folds.csv, one row per crop: video,file,label,original,frame,fold,track,method.

DFDC layout: folds follow part numbers as the recipe did, `dfdc_parts_per_fold` consecutive
parts per fold (3), the last fold (15) taking the remaining parts. A dataset that fixes its
splits (the 140k faces' train/valid/test, FaceForensics++'s split files) keeps them: valid is
fold 0, train fold 1, and the test split stays out of folds.csv (it is for inference.predict and
inference.score); one with a train and a test split only (Celeb-DF) folds its train split as
below and leaves the test split out. Other layouts:
group k-fold (default 5) on the original, so that an original and its fakes always share a fold. The step
checks that no group spans two folds. `original` names the video whose landmarks and diffs
apply: a fake's original when present, else the video itself. `track` is the face track of the
crop in that video: its boxes linked across frames by overlap (preprocess/tracks.py), written to
tracks/{video}.json, for temporal models. `method` is how a fake was made where the dataset says
(`real` for reals, `unknown` where it does not), for training on some methods only
(`data.train_methods`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

from sklearn.model_selection import GroupKFold

from preprocess import cli
from preprocess.datasets import VideoRecord, dfdc_part_number, load_dataset
from preprocess.io_utils import write_csv_atomic, write_json_atomic
from preprocess.outputs import boxes_path, crops_dir, parse_crop_name, read_boxes
from preprocess.steps import load_config, setup_logging
from preprocess.tracks import frame_tracks, tracks_path

logger = logging.getLogger("preprocess.folds")
FIELDS = ["video", "file", "label", "original", "frame", "fold", "track", "method"]


class FoldError(RuntimeError):
    pass


SPLIT_FOLDS = {"valid": 0, "train": 1}  # a dataset's own splits; its test split is left out


def landmark_source(record: VideoRecord, ids: set[str]) -> str:
    return record.original if record.is_fake and record.original in ids else record.video


def assign_folds(records: list[VideoRecord], settings: dict) -> dict[str, int]:
    """{video: fold}; every video of a group gets its group's fold."""
    if any(record.split for record in records):
        if any(record.split == "valid" for record in records):
            return {record.video: SPLIT_FOLDS[record.split] for record in records if record.split in SPLIT_FOLDS}
        # a train/test split only (Celeb-DF): k folds of the train split, the test split left out
        records = [record for record in records if record.split == "train"]
    ids = {record.video for record in records}
    by_id = {record.video: record for record in records}
    groups = {record.video: landmark_source(record, ids) for record in records}
    parts = {record.video: dfdc_part_number(Path(record.source)) for record in records}
    if records and all(part is not None for part in parts.values()):
        last = settings["dfdc_folds"] - 1
        group_fold = {g: min(parts[g] // settings["dfdc_parts_per_fold"], last) for g in set(groups.values())}
    else:
        names = sorted(set(groups.values()))
        splits = min(settings["k"], len(names))
        if splits < 2:
            logger.warning("only %d group(s): everything goes to fold 0", len(names))
            group_fold = dict.fromkeys(names, 0)
        else:
            group_fold = {}
            for fold, (_, test) in enumerate(GroupKFold(n_splits=splits).split(names, groups=names)):
                group_fold.update({names[i]: fold for i in test})
    folds = {video: group_fold[group] for video, group in groups.items()}
    spans = defaultdict(set)
    for video, fold in folds.items():
        spans[by_id[video].group].add(fold)
        spans[groups[video]].add(fold)
    broken = {group: sorted(f) for group, f in spans.items() if len(f) > 1}
    if broken:
        raise FoldError(f"groups spanning several folds: {broken}")
    return folds


def source_tracks(root: Path, video: str) -> dict[int, list[int]]:
    """{frame: track of each face} of a box source, linked from its boxes (cheap: done afresh
    each time, so it follows the boxes) and written to tracks/{video}.json; {} without boxes."""
    path = tracks_path(root, video)
    boxes = boxes_path(root, video)
    if not boxes.exists():
        return {}
    tracks = frame_tracks(read_boxes(boxes))
    write_json_atomic(path, {str(frame): people for frame, people in tracks.items()}, indent=None)
    return tracks


def fold_rows(records: list[VideoRecord], folds: dict[str, int], root: Path) -> list[dict]:
    """A row per crop; `track` is the crop's face track in its box source (a fake cut at its
    original's boxes shares the original's tracks)."""
    ids = {record.video for record in records}
    rows = []
    for record in sorted(records, key=lambda r: r.video):
        folder = crops_dir(root, record.video)
        if record.video not in folds or not folder.is_dir():
            continue
        source = landmark_source(record, ids)
        tracks = source_tracks(root, source)
        for crop in sorted(folder.glob("*.png"), key=lambda p: parse_crop_name(p.name)):
            frame, face = parse_crop_name(crop.name)
            people = tracks.get(frame, [])
            rows.append(
                {
                    "video": record.video,
                    "file": crop.name,
                    "label": record.label,
                    "original": source,
                    "frame": frame,
                    "fold": folds[record.video],
                    "track": people[face] if face < len(people) else face,
                    "method": record.method or ("unknown" if record.is_fake else "real"),
                }
            )
    return rows


def make_folds(root: Path, out: Path, records: list[VideoRecord], settings: dict) -> list[dict]:
    folds = assign_folds(records, settings)
    rows = fold_rows(records, folds, root)
    write_csv_atomic(out, rows, FIELDS)
    held_out = sum(record.video not in folds for record in records)
    if held_out:
        logger.info("folds: the %d videos or photos of the test split are left out", held_out)
    without_crops = len(records) - held_out - len({row["video"] for row in rows})
    logger.info(
        "folds: %d crops of %d videos in %d folds -> %s%s",
        len(rows),
        len(records) - held_out - without_crops,
        len({row["fold"] for row in rows}),
        out,
        f" ({without_crops} videos without crops left out)" if without_crops else "",
    )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.folds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root-dir", type=Path, required=True, help="dataset root")
    parser.add_argument("--output-dir", type=Path, default=None, help="where crops are (default: the root dir)")
    parser.add_argument("--out", type=Path, default=None, help="default: OUTPUT_DIR/folds.csv")
    parser.add_argument("--layout", default=None, help="dataset layout (default: detected)")
    parser.add_argument("--config", type=Path, default=None, help="preprocessing settings")
    parser.add_argument("--k", type=int, default=None, help="folds for non-DFDC layouts (config: 5)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    settings = load_config(args.config)["folds"]
    if args.k is not None:
        settings["k"] = args.k
    output_dir = args.output_dir or args.root_dir
    make_folds(output_dir, args.out or output_dir / "folds.csv", load_dataset(args.root_dir, args.layout), settings)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
