"""Step 5: folds.csv, one row per crop: video,file,label,original,frame,fold,track,method.

Videos that must stay together share a fold: a video, its original, the dataset's `group` (such
as the DFDC preview's filmed person, or a CSV's group column) and the people its file name says it
shows (preprocess/identities.py: a face swap shows both the filmed person and the face put on),
linked with union-find into groups before any split.

DFDC layout: folds follow part numbers as the recipe did, `dfdc_parts_per_fold` consecutive
parts per fold (3), the last fold (15) taking the remaining parts; a group spread over several
parts follows its original's part (the lowest one, or its videos' lowest without an original).
A dataset that fixes its splits (the 140k faces' train/valid/test, FaceForensics++'s split
files) keeps them: valid is fold 0, train fold 1, and the test split stays out of folds.csv (it
is for inference.predict and inference.score); a group in both the train and the valid split is
an error. One with a train and a test split only (Celeb-DF, the DFDC preview) folds its train
split as below and leaves the test split out. A training video that shares an original or a
`group` with a test video is left out too; one that only shares a person with the test split is
kept (the official splits are by video; papers train on them) and counted in a warning. Other
layouts: group k-fold (default 5) on the groups. `original` names the video whose landmarks and
diffs apply: a fake's original when present, else the video itself. `track` is the face track
of the crop in that video: its boxes linked across frames by overlap (preprocess/faces/tracks.py),
written to tracks/{video}.json, for temporal models. `method` is how a fake was made where the
dataset says (`real` for reals, `unknown` where it does not), for training on some methods only
(`data.train_methods`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path

from sklearn.model_selection import GroupKFold

from common import cli
from common.cli import InputError
from common.io_utils import write_csv_atomic, write_json_atomic
from preprocess.datasets import VideoRecord, dfdc_part_number, load_dataset
from preprocess.faces.tracks import frame_tracks, tracks_path
from preprocess.outputs import boxes_path, crops_dir, parse_crop_name, read_boxes
from preprocess.steps import load_config, setup_logging

logger = logging.getLogger("preprocess.folds")
FIELDS = ["video", "file", "label", "original", "frame", "fold", "track", "method"]


class FoldError(InputError):
    """The dataset's own splits separate videos that must share a fold."""


SPLIT_FOLDS = {"valid": 0, "train": 1}  # a dataset's own splits; its test split is left out
TRAINING_SPLITS = ("train", "valid")


def landmark_source(record: VideoRecord, ids: set[str]) -> str:
    return record.original if record.is_fake and record.original in ids else record.video


class UnionFind:
    """Disjoint sets of hashable nodes; a set's root is its smallest node (deterministic)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, node):
        root = self.parent.setdefault(node, node)
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, first, second) -> None:
        first, second = self.find(first), self.find(second)
        if first != second:
            self.parent[max(first, second)] = min(first, second)


PERSON, GROUP, VIDEO = 0, 1, 2  # the nodes linked, in the order a group is named by
NODE_WORDS = {PERSON: "person", GROUP: "group", VIDEO: "video"}


def record_nodes(record: VideoRecord, with_identities: bool = True) -> set[tuple[int, str]]:
    """What links a video to others: itself, its original, its group, (with_identities) the people it shows."""
    nodes = {(VIDEO, record.video), (GROUP, record.group)}
    nodes |= {(VIDEO, record.original)} if record.original else set()
    return nodes | ({(PERSON, person) for person in record.identities} if with_identities else set())


def video_groups(records: list[VideoRecord], with_identities: bool = True) -> dict[str, tuple[int, str]]:
    """{video: its group}: the union of the video, its original, its `group` and (with_identities)
    the people it shows. A group is named by its smallest node: a person, else a group, else a video."""
    links = UnionFind()
    for record in records:
        for node in record_nodes(record, with_identities):
            links.union((VIDEO, record.video), node)
    return {record.video: links.find((VIDEO, record.video)) for record in records}


def describe_group(group: tuple[int, str]) -> str:
    return f"{NODE_WORDS[group[0]]} '{group[1]}'"


def dataset_folder(records: list[VideoRecord]) -> str:
    """The folder that holds these videos, to name in messages."""
    return os.path.commonpath([str(Path(record.path).parent) for record in records]) if records else "dataset"


def check_fixed_splits(records: list[VideoRecord]) -> None:
    """A dataset's train and valid splits must not separate a group (they become folds 1 and 0);
    the test split, left out, links nothing. The error names what the two splits share."""
    kept = [record for record in records if record.split in SPLIT_FOLDS]
    groups = video_groups(kept)
    by_group = defaultdict(lambda: defaultdict(list))
    for record in kept:
        by_group[groups[record.video]][record.split].append(record)
    for group, by_split in sorted(by_group.items()):
        if len(by_split) < 2:
            continue
        shared = {
            node: (train, valid)
            for train in by_split["train"]
            for valid in by_split["valid"]
            for node in record_nodes(train) & record_nodes(valid)
        }
        node, (train, valid) = min(shared.items()) if shared else (group, (by_split["train"][0], by_split["valid"][0]))
        linked = "" if shared else " (linked through other videos)"
        raise FoldError(
            f"{dataset_folder([train, valid])}: the dataset's splits put {describe_group(node)} in both "
            f"train ({train.video}) and valid ({valid.video}){linked}; its videos must share a fold"
        )


def training_records(records: list[VideoRecord]) -> list[VideoRecord]:
    """The videos of the train and valid splits, less those that share an original or a `group`
    with a test video (left out, in a warning); sharing only a person is counted in a warning."""
    training = [record for record in records if record.split in TRAINING_SPLITS]
    for with_identities in (False, True):
        groups = video_groups(records, with_identities)
        tested = {groups[record.video] for record in records if record.split == "test"}
        touching = [record for record in training if groups[record.video] in tested]
        if not touching:
            continue
        examples = ", ".join(sorted(record.video for record in touching)[:3])
        if not with_identities:
            logger.warning(
                "%s: training videos that share an original or a group with the test split: %d, left out (e.g. %s)",
                dataset_folder(touching),
                len(touching),
                examples,
            )
            training = [record for record in training if groups[record.video] not in tested]
        else:
            logger.warning(
                "%s: %d of %d training videos show a person who is also in the test split (e.g. %s): the "
                "dataset's split is by video, not by person; kept, as published results do",
                dataset_folder(touching),
                len(touching),
                len(training),
                examples,
            )
    return training


def dfdc_group_folds(records: list[VideoRecord], groups: dict, settings: dict) -> dict:
    """{group: fold} by part number: the part of the group's original (its lowest part if several),
    else the lowest part of its videos."""
    parts = defaultdict(list)
    for record in records:
        parts[groups[record.video]].append((record.is_fake, dfdc_part_number(Path(record.source))))
    last = settings["dfdc_folds"] - 1
    return {group: min(min(found)[1] // settings["dfdc_parts_per_fold"], last) for group, found in parts.items()}


def k_fold_groups(records: list[VideoRecord], groups: dict, k: int) -> dict:
    """{group: fold}: group k-fold, balancing the folds' numbers of videos."""
    names = sorted(set(groups.values()))
    splits = min(k, len(names))
    if splits < 2:
        logger.warning("only %d group(s) of videos that must stay together: everything goes to fold 0", len(names))
        return dict.fromkeys(names, 0)
    if splits < k:
        logger.warning("only %d groups of videos that must stay together: %d folds instead of %d", splits, splits, k)
    index = {name: number for number, name in enumerate(names)}
    videos = sorted(record.video for record in records)
    labels = [index[groups[video]] for video in videos]
    group_fold = {}
    for fold, (_, held) in enumerate(GroupKFold(n_splits=splits).split(videos, groups=labels)):
        group_fold.update({names[labels[i]]: fold for i in held})
    largest, size = Counter(groups.values()).most_common(1)[0]
    if size > len(videos) / 2:
        logger.warning(
            "%s holds %d of the %d videos (videos linked by originals, groups or people): the folds are unbalanced",
            describe_group(largest),
            size,
            len(videos),
        )
    return group_fold


def assign_folds(records: list[VideoRecord], settings: dict) -> dict[str, int]:
    """{video: fold}; every video of a group (see video_groups) gets its group's fold."""
    if any(record.split for record in records):
        if any(record.split == "valid" for record in records):
            check_fixed_splits(records)
            return {record.video: SPLIT_FOLDS[record.split] for record in training_records(records)}
        # a train/test split only (Celeb-DF, the DFDC preview): k folds of the train split, the test split left out
        records = training_records(records)
    groups = video_groups(records)
    if records and all(dfdc_part_number(Path(record.source)) is not None for record in records):
        group_fold = dfdc_group_folds(records, groups, settings)
    else:
        group_fold = k_fold_groups(records, groups, settings["k"])
    return {record.video: group_fold[groups[record.video]] for record in records}


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
