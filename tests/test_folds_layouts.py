"""Folds on every dataset layout, from tiny trees named as the real datasets name their files: the
step succeeds; no person, original with its fakes, or dataset group is in two folds; every
training video gets a fold; the test split stays out."""

from __future__ import annotations

import csv
import json
import logging
import random
import string
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from common import cli
from common.cli import InputError
from preprocess import folds
from preprocess.datasets import FAKE, REAL, VideoRecord
from preprocess.folds import FoldError, assign_folds
from preprocess.identities import celebdf_identities, dfdcp_identities, ffpp_identities
from preprocess.outputs import crop_name, crops_dir
from tests.conftest import REPO_ROOT

FOLD_SETTINGS = {"k": 5, "dfdc_parts_per_fold": 3, "dfdc_folds": 16}


@dataclass
class Video:
    """What the test knows of a video: what it must share a fold with (people, its scene, its
    dataset group), and whether it belongs in folds.csv."""

    keys: set[str] = field(default_factory=set)
    in_folds: bool = True


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def fold_csv(root: Path, videos: dict[str, Video], layout: str, k: int = 5) -> dict[str, int]:
    """Crops for every video, then preprocess.folds as its command runs it: {video: fold}."""
    for video in videos:
        for frame in (0, 10):
            path = crops_dir(root, video) / crop_name(frame, 0)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    assert cli.run(folds.main, ["--root-dir", str(root), "--layout", layout, "--k", str(k)]) == 0
    with open(root / "folds.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    fold_of = {row["video"]: int(row["fold"]) for row in rows}
    assert len(rows) == 2 * len(fold_of), "every crop of a video is a row"
    return fold_of


def assert_kept_together(videos: dict[str, Video], fold_of: dict[str, int], least_folds: int = 2) -> None:
    assert set(fold_of) == {video for video, known in videos.items() if known.in_folds}
    folds_of_key = defaultdict(set)
    for video, fold in fold_of.items():
        for key in videos[video].keys | {video}:
            folds_of_key[key].add(fold)
    assert {key: sorted(found) for key, found in folds_of_key.items() if len(found) > 1} == {}
    assert len(set(fold_of.values())) >= least_folds


def test_dfdc_parts_make_the_folds_and_a_scene_follows_its_original(tmp_path):
    letters = random.Random(0)
    new_id = lambda: "".join(letters.choices(string.ascii_lowercase, k=10))  # noqa: E731  like aaqaifqrwn
    metadata, videos, expected = defaultdict(dict), {}, {}
    for index in range(6):
        part = (0, 3, 7)[index % 3]
        original = new_id()
        metadata[part][f"{original}.mp4"] = {"label": "REAL", "split": "train", "original": None}
        videos[original], expected[original] = Video({original}), part // 3
        for number in range(3):
            fake, fake_part = new_id(), 7 if index == 0 and number == 2 else part  # one fake in another part
            metadata[fake_part][f"{fake}.mp4"] = {"label": "FAKE", "split": "train", "original": f"{original}.mp4"}
            videos[fake], expected[fake] = Video({original}), part // 3
    for fake_part in (3, 7):  # fakes of an original that is not on disk, in two parts: the lowest
        fake = new_id()
        metadata[fake_part][f"{fake}.mp4"] = {"label": "FAKE", "split": "train", "original": "vanishedxx.mp4"}
        videos[fake], expected[fake] = Video({"vanishedxx"}), 1
    for part, entries in metadata.items():
        folder = tmp_path / f"dfdc_train_part_{part}"
        for name in entries:
            touch(folder / name)
        (folder / "metadata.json").write_text(json.dumps(entries))
    fold_of = fold_csv(tmp_path, videos, "dfdc")
    assert_kept_together(videos, fold_of, least_folds=3)
    assert fold_of == expected, "three consecutive parts per fold, as the recipe"


def dfdc_preview_tree(root: Path, people: dict[str, str], swaps: dict[str, list[str]]) -> dict[str, Video]:
    """dataset.json and its videos: per filmed person (with its set), two reals and a fake per face
    in `swaps` (method_A/<person>/<person>_<scene>/<face>_<person>_<scene>_<clip>.mp4)."""
    entries, videos = {}, {}
    for person, split in people.items():
        for scene, clip in (("A", "001"), ("B", "002")):
            entries[f"original_videos/{person}/{person}_{scene}/{clip}.mp4"] = {"label": "real", "set": split}
            for method, face in zip(("method_A", "method_B"), swaps[person], strict=True):
                name = f"{method}/{person}/{person}_{scene}/{face}_{person}_{scene}_{clip}.mp4"
                entries[name] = {"label": "fake", "set": split}
    for name, entry in entries.items():
        touch(root / name)
        filmed, file_name = name.split("/")[1], name.split("/")[-1]
        shown = {filmed, file_name.split("_")[0]} if entry["label"] == "fake" else {filmed}
        videos[name.removesuffix(".mp4").replace("/", "__")] = Video(shown, entry["set"] == "train")
    (root / "dataset.json").write_text(json.dumps(entries))
    return videos


def test_dfdc_preview_three_people_with_several_videos_each(tmp_path):
    """The reproduction: 18 training videos of three people; each person once raised FoldError."""
    people = {"1000": "train", "1001": "train", "1002": "train"}
    swaps = {"1000": ["1255229", "1255230"], "1001": ["1255231", "1255232"], "1002": ["1255233", "1255234"]}
    videos = dfdc_preview_tree(tmp_path, people, swaps)
    assert len(videos) == 18
    assert_kept_together(videos, fold_csv(tmp_path, videos, "dfdcp"), least_folds=3)


def test_dfdc_preview_from_the_command_line_is_not_a_traceback(tmp_path):
    people = {"1000": "train", "1001": "train", "1002": "train"}
    swaps = {"1000": ["1255229", "1255230"], "1001": ["1255231", "1255232"], "1002": ["1255233", "1255234"]}
    videos = dfdc_preview_tree(tmp_path, people, swaps)
    for video in videos:
        touch(crops_dir(tmp_path, video) / crop_name(0, 0))
    command = [sys.executable, "-m", "preprocess.folds", "--root-dir", str(tmp_path), "--layout", "dfdcp"]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    with open(tmp_path / "folds.csv", newline="") as handle:
        assert {row["video"] for row in csv.DictReader(handle)} == set(videos)


def test_dfdc_preview_keeps_the_test_people_out_of_training(tmp_path, caplog):
    people = {f"10{n:02d}": "train" for n in range(6)} | {"1006": "test", "1007": "test"}
    swaps = {person: [f"20{n:02d}", f"21{n:02d}"] for n, person in enumerate(people)}
    swaps["1000"][0] = "1001"  # 1001's face on 1000's scene: 1000 and 1001 share a fold
    swaps["1002"][0] = "1006"  # a test person's face on a training video: kept, in a warning
    videos = dfdc_preview_tree(tmp_path, people, swaps)
    entries = json.loads((tmp_path / "dataset.json").read_text())
    entries["original_videos/1005/1005_C/009.mp4"] = {"label": "real", "set": "test"}  # 1005 in both sets
    touch(tmp_path / "original_videos/1005/1005_C/009.mp4")
    (tmp_path / "dataset.json").write_text(json.dumps(entries))
    videos["original_videos__1005__1005_C__009"] = Video({"1005"}, in_folds=False)
    for video, known in videos.items():
        known.in_folds = known.in_folds and "__1005__" not in video
    with caplog.at_level(logging.WARNING, logger="preprocess.folds"):
        fold_of = fold_csv(tmp_path, videos, "dfdcp")
    assert_kept_together(videos, fold_of, least_folds=4)
    assert "training videos that share an original or a group with the test split: 6, left out" in caplog.text
    assert "show a person who is also in the test split" in caplog.text


def ffpp_tree(root: Path, with_dfd: bool = True) -> dict[str, Video]:
    """original_sequences/youtube/c23/videos/NNN.mp4 and their swaps TTT_SSS both ways (two methods),
    c40 copies of some, and DeepFakeDetection's actors."""
    videos = {}
    pairs = [(f"{2 * n:03d}", f"{2 * n + 1:03d}") for n in range(6)]
    for first, second in pairs:
        for quality in ("c23", "c40") if first in ("000", "002") else ("c23",):
            for stem in (first, second):
                touch(root / f"original_sequences/youtube/{quality}/videos/{stem}.mp4")
                videos[f"youtube-{quality}-{stem}"] = Video({stem})
            for method in ("Deepfakes", "FaceSwap"):
                for target, source in ((first, second), (second, first)):
                    touch(root / f"manipulated_sequences/{method}/{quality}/videos/{target}_{source}.mp4")
                    videos[f"{method}-{quality}-{target}_{source}"] = Video({target, source})
    if with_dfd:
        for actor, scene in (("01", "walking"), ("02", "hugging_happy"), ("03", "kitchen_pan")):
            touch(root / f"original_sequences/actors/c23/videos/{actor}__{scene}.mp4")
            videos[f"actors-c23-{actor}__{scene}"] = Video({f"actor{actor}"})
        for name, shown in (("01_02__walking__YVGY8LOK", {"01", "02"}), ("03_04__kitchen_pan__ZX2J6DCL", {"03", "04"})):
            touch(root / f"manipulated_sequences/DeepFakeDetection/c23/videos/{name}.mp4")
            videos[f"DeepFakeDetection-c23-{name}"] = Video({f"actor{actor}" for actor in shown})
    return videos


def test_faceforensics_without_split_files_folds_people_and_says_so(tmp_path, caplog):
    videos = ffpp_tree(tmp_path)
    with caplog.at_level(logging.WARNING):
        fold_of = fold_csv(tmp_path, videos, "ffpp")
    assert_kept_together(videos, fold_of, least_folds=5)
    assert "no FaceForensics++ split files" in caplog.text and "official split" in caplog.text


def test_faceforensics_split_files_are_kept(tmp_path):
    videos = ffpp_tree(tmp_path)
    official = {"train": [["000", "001"], ["002", "003"]], "val": [["004", "005"], ["006", "007"]]}
    official["test"] = [["008", "009"], ["010", "011"]]
    for name, pairs in official.items():
        touch(tmp_path / "splits" / f"{name}.json")
        (tmp_path / "splits" / f"{name}.json").write_text(json.dumps(pairs))
    fold_in = {stem: fold for name, fold in (("train", 1), ("val", 0)) for pair in official[name] for stem in pair}
    for video, known in videos.items():
        known.in_folds = not video.startswith(("DeepFakeDetection", "actors")) and bool(known.keys & set(fold_in))
    fold_of = fold_csv(tmp_path, videos, "ffpp")
    assert_kept_together(videos, fold_of)
    assert all(fold == fold_in[min(videos[video].keys)] for video, fold in fold_of.items())


def test_celebdf_keeps_each_celebrity_in_one_fold_and_the_test_list_out(tmp_path, caplog):
    videos = {}

    def add(name: str, keys: set[str], in_folds: bool = True) -> None:
        touch(tmp_path / name)
        videos[name.removesuffix(".mp4").replace("/", "__")] = Video(keys, in_folds)

    testing = ["1 YouTube-real/00170.mp4", "1 Celeb-real/id6_0000.mp4", "1 Celeb-real/id7_0000.mp4"]
    testing += ["0 Celeb-synthesis/id6_id7_0000.mp4", "1 Celeb-real/id4_0002.mp4"]
    for pair in ((0, 1), (2, 3), (4, 5)):
        for target, source in (pair, pair[::-1]):
            for clip in range(3):
                if f"1 Celeb-real/id{target}_{clip:04d}.mp4" not in testing:
                    add(f"Celeb-real/id{target}_{clip:04d}.mp4", {f"id{target}"})
            for clip in range(2):
                add(f"Celeb-synthesis/id{target}_id{source}_{clip:04d}.mp4", {f"id{target}", f"id{source}"})
    add("Celeb-synthesis/id4_id5_0002.mp4", {"id4", "id5"}, in_folds=False)  # its original is a test video
    for number in range(6):
        add(f"YouTube-real/{number:05d}.mp4", set())
    add("Celeb-synthesis/not_a_celebdf_name.mp4", set())  # tolerated: it stands for itself
    for line in testing:
        add(line.split()[1], {name for name in line.split("/")[-1].split("_") if name.startswith("id")}, False)
    (tmp_path / "List_of_testing_videos.txt").write_text("\n".join(testing) + "\n")
    with caplog.at_level(logging.WARNING, logger="preprocess.folds"):
        fold_of = fold_csv(tmp_path, videos, "celebdf")
    assert_kept_together(videos, fold_of, least_folds=5)
    assert "training videos that share an original or a group with the test split: 1, left out" in caplog.text
    assert "show a person who is also in the test split" in caplog.text


@pytest.mark.parametrize("with_group", [True, False])
def test_csv_groups_and_originals_share_a_fold(tmp_path, with_group):
    rows, videos = ["path,label,original,group"], {}
    for number in range(6):
        person = f"person{number}"
        for clip in range(2):
            rows.append(f"{person}/real_{clip}.mp4,REAL,,{person if with_group else ''}")
            rows.append(f"{person}/fake_{clip}.mp4,FAKE,{person}/real_{clip}.mp4,{person if with_group else ''}")
            for kind in ("real", "fake"):
                videos[f"{person}__{kind}_{clip}"] = Video({person} if with_group else {f"{person}/{clip}"})
    if with_group:  # a swap of person1's face on person0's scene: its group joins the two people
        rows.append("person0/swap_from_1.mp4,FAKE,person0/real_0.mp4,person1")
        videos["person0__swap_from_1"] = Video({"person0", "person1"})
    for row in rows[1:]:
        touch(tmp_path / row.split(",")[0])
    (tmp_path / "dataset.csv").write_text("\n".join(rows) + "\n")
    assert_kept_together(videos, fold_csv(tmp_path, videos, "csv"), least_folds=4)


def test_the_140k_splits_are_kept(tmp_path):
    base, videos, expected = tmp_path / "real_vs_fake" / "real-vs-fake", {}, {}
    for split, count in (("train", 6), ("valid", 3), ("test", 3)):
        for label in ("real", "fake"):
            for number in range(count):
                name = f"{number:05d}.jpg" if label == "real" else f"{split[0].upper()}{number:03d}ZHJH8X.jpg"
                touch(base / split / label / name)
                video = f"{split}__{label}__{Path(name).stem}"
                videos[video] = Video(in_folds=split != "test")
                if split != "test":
                    expected[video] = {"valid": 0, "train": 1}[split]
    assert fold_csv(tmp_path, videos, "splits") == expected


def test_plain_folders_are_k_folded(tmp_path):
    videos = {}
    for label in ("real", "fake"):
        for number in range(6):
            touch(tmp_path / label / f"clip_{number:03d}.mp4")
            videos[f"{label}__clip_{number:03d}"] = Video()
    assert_kept_together(videos, fold_csv(tmp_path, videos, "folders"), least_folds=5)


def test_own_splits_that_separate_a_group_are_one_line_naming_the_folder_and_group(tmp_path):
    def record(video, split, label=REAL, original=None, identities=()):
        path = tmp_path / "data" / f"{video}.mp4"
        return VideoRecord(video, path, label, original, original or video, "x", split, None, identities)

    records = [record("a", "train", identities=("p1",)), record("b", "valid", FAKE, None, ("p2", "p1"))]
    with pytest.raises(FoldError) as raised:
        assign_folds(records, FOLD_SETTINGS)
    assert isinstance(raised.value, InputError)
    assert cli.describe(raised.value) == (
        f"{tmp_path / 'data'}: the dataset's splits put person 'p1' in both train (a) and valid (b); "
        "its videos must share a fold"
    )


def _ffpp_record(root, stem, split, label=FAKE):
    return VideoRecord(stem, root / f"{stem}.mp4", label, None, stem, "x", split, None, ffpp_identities(stem))


def test_own_splits_name_the_person_they_share(tmp_path):
    """train 000_001 and valid 001_002 share 001, not 000 (the group's smallest person)."""
    records = [
        _ffpp_record(tmp_path, "000", "train", REAL),
        _ffpp_record(tmp_path, "000_001", "train"),
        _ffpp_record(tmp_path, "001_002", "valid"),
        _ffpp_record(tmp_path, "002", "valid", REAL),
    ]
    with pytest.raises(FoldError, match=r"put person 'youtube:001' in both train \(000_001\) and valid \(001_002\);"):
        assign_folds(records, FOLD_SETTINGS)


def test_train_and_valid_linked_only_through_the_test_split_are_not_refused(tmp_path):
    records = [
        _ffpp_record(tmp_path, "000_001", "train"),
        _ffpp_record(tmp_path, "001_002", "test"),
        _ffpp_record(tmp_path, "002_003", "valid"),
    ]
    assert assign_folds(records, FOLD_SETTINGS) == {"000_001": 1, "002_003": 0}


def test_names_that_do_not_parse_name_nobody():
    assert ffpp_identities("071_054") == ("youtube:071", "youtube:054")
    assert ffpp_identities("01_02__walking__YVGY8LOK") == ("actors:01", "actors:02")
    assert ffpp_identities("01__walking") == ("actors:01",) and ffpp_identities("071") == ("youtube:071",)
    assert celebdf_identities("id0_id16_0001") == ("id0", "id16") and celebdf_identities("id3_0007") == ("id3",)
    assert dfdcp_identities("method_A/1000/1000_A/1255229_1000_A_001.mp4") == ("1000", "1255229")
    assert dfdcp_identities("original_videos/1000/1000_A/001.mp4") == ("1000",)
    for name in ("", "x", "id0", "00170", "a_b_c", "__", "id0_id1"):
        assert ffpp_identities(name) in ((), ("youtube:00170",)) and celebdf_identities(name) == ()
    assert dfdcp_identities("loose.mp4") == () and dfdcp_identities("method_A/1000/odd.mp4") == ("1000",)
