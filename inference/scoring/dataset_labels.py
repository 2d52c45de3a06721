"""The labelled videos of a dataset in any layout preprocessing reads, named as predict names them.

`inference.predict --test-dir ROOT --recursive` names each video by its path under ROOT
(`Celeb-real/id0_0000.mp4`, `manipulated_sequences/Deepfakes/c23/videos/000_003.mp4`); the
videos here carry the same names, so that a submission made on the dataset's folder lines up with
them. `split` keeps one of the dataset's official splits (Celeb-DF's List_of_testing_videos.txt,
FaceForensics++'s splits/*.json, the DFDC preview's `set` fields, the train/valid/test folders of
the `splits` layout, DFDC metadata's `split` fields); a layout without one, or a split it does not
have, is an `InputError` naming the folder and the problem.

    python -m inference.scoring.dataset_labels DIR     prints DIR's layout and its splits ("celebdf test train"),
                                               or "none" for a plain folder of media (./run_all.sh asks)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from common import cli
from common.cli import InputError
from preprocess.datasets import DatasetError, detect_layout, dfdc_part_number, load_dataset

# where each layout's splits come from (a layout not named here has none)
SPLIT_SOURCES = {
    "celebdf": "List_of_testing_videos.txt",
    "ffpp": "splits/train.json, val.json and test.json",
    "dfdcp": "dataset.json's `set` fields",
    "splits": "the train/, valid/ and test/ folders",
    "dfdc": "metadata.json's `split` fields",
}
SPLIT_ALIASES = {"val": "valid", "validation": "valid"}


@dataclass(frozen=True)
class LabelledVideo:
    """filename: the path under the dataset's root, as predict --recursive names it. source: where
    it comes from (the DFDC part, FF++ method or `original`, Celeb-DF folder, ...). method: how a
    fake was made, where the dataset says. split: its official split, where the dataset has them."""

    filename: str
    label: int
    source: str | None
    method: str | None = None
    split: str | None = None


def split_name(split) -> str | None:
    """The split as the layouts name it (`val` and `validation` are `valid`); None where none is given."""
    if split is None or not str(split).strip():
        return None
    name = str(split).strip().lower()
    return SPLIT_ALIASES.get(name, name)


def in_split(videos: list[LabelledVideo], split: str | None, where: Path, layout: str) -> list[LabelledVideo]:
    """The videos of `split` (all where None); an InputError where there is no such split."""
    split = split_name(split)
    if split is None:
        return videos
    found = sorted({video.split for video in videos if video.split})
    if not found:
        if layout in SPLIT_SOURCES:
            raise InputError(f"{where}: no splits here (the {layout} layout takes them from {SPLIT_SOURCES[layout]})")
        raise InputError(f"{where}: the {layout} layout has no official splits: leave out --split")
    chosen = [video for video in videos if video.split == split]
    if not chosen:
        raise InputError(
            f"{where}: no videos in the '{split}' split (splits here: {', '.join(found)}; the {layout} layout takes "
            f"them from {SPLIT_SOURCES.get(layout, 'its files')})"
        )
    return chosen


def dfdc_metadata_splits(root: Path) -> dict[str, str]:
    """{part/file name: the `split` of its metadata.json entry} over the DFDC parts of root."""
    splits = {}
    for part in sorted(p for p in Path(root).iterdir() if p.is_dir() and dfdc_part_number(p) is not None):
        metadata = part / "metadata.json"
        for name, entry in json.loads(metadata.read_text()).items():
            if isinstance(entry, dict) and entry.get("split"):
                splits[f"{part.name}/{name}"] = str(entry["split"]).lower()
    return splits


def folder_layout(root: Path, layout: str | None = None) -> str | None:
    """The layout of the dataset at root: `layout` where given; `folders` where it has real/ or
    fake/ (taken first, as before the other layouts were read); else detected. None for a folder of
    no layout with a labels.csv in it (DFDC's public test set, the demo's test videos); a folder of
    neither is a DatasetError that lists the layouts."""
    root = Path(root)
    if layout is not None:
        return layout
    if (root / "real").is_dir() or (root / "fake").is_dir():
        return "folders"
    try:
        return detect_layout(root)
    except DatasetError as error:
        if (root / "labels.csv").is_file():
            return None
        raise DatasetError(f"{error}; or a labels.csv (filename,label)") from error


def dataset_videos(root: Path, layout: str | None = None, split: str | None = None) -> list[LabelledVideo]:
    """The videos on disk of the dataset at root (layout detected where None), of `split` where given."""
    root = Path(root)
    layout = layout or detect_layout(root)
    records = load_dataset(root, layout)
    metadata_splits = dfdc_metadata_splits(root) if layout == "dfdc" else {}
    videos = []
    for record in records:
        filename = record.path.relative_to(root).as_posix()
        method = record.method if record.is_fake else None
        videos.append(
            LabelledVideo(filename, record.label, record.source, method, record.split or metadata_splits.get(filename))
        )
    return in_split(videos, split, root, layout)


def layout_and_splits(root: Path) -> tuple[str | None, list[str]]:
    """(the layout of the dataset at root, its official splits); (None, []) for a plain folder of
    media, with or without a labels.csv."""
    try:
        layout = folder_layout(root)
    except DatasetError:
        return None, []
    if layout is None:
        return None, []
    return layout, sorted({video.split for video in dataset_videos(root, layout) if video.split})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.scoring.dataset_labels",
        description="Print the layout of a dataset folder and its official splits ('none' for a plain folder).",
    )
    parser.add_argument("root", type=Path, help="a dataset folder, or a folder of videos")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        raise InputError(f"{args.root}: not a folder")
    layout, splits = layout_and_splits(args.root)
    print(" ".join([layout or "none", *splits]))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
