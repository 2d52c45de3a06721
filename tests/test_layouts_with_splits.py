"""Celeb-DF v2, the DFDC preview and FaceForensics++'s split files (preprocess/layouts_with_splits.py),
read from tiny trees."""

from __future__ import annotations

import json

import pytest

from preprocess.datasets import DatasetError, detect_layout, load_dataset
from preprocess.folds import assign_folds

FOLD_SETTINGS = {"k": 2, "dfdc_folds": 16, "dfdc_parts_per_fold": 3}


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_celebdf_reads_its_folders_originals_and_official_test_list(tmp_path):
    for name in ["Celeb-real/id0_0000", "Celeb-real/id0_0001", "Celeb-real/id1_0003", "Celeb-real/id2_0004"]:
        touch(tmp_path / f"{name}.mp4")
    touch(tmp_path / "YouTube-real/00170.mp4")
    for name in ["id0_id1_0000", "id0_id16_0001", "id1_id0_0003", "id2_id5_0004"]:
        touch(tmp_path / "Celeb-synthesis" / f"{name}.mp4")
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\n0 Celeb-synthesis/id1_id0_0003.mp4\n1 Celeb-real/id1_0003.mp4\n"
    )
    assert detect_layout(tmp_path) == "celebdf"
    records = {r.video: r for r in load_dataset(tmp_path)}
    fake = records["Celeb-synthesis__id0_id16_0001"]
    assert (fake.label, fake.original, fake.group, fake.source) == (
        1,
        "Celeb-real__id0_0001",
        "Celeb-real__id0_0001",
        "Celeb-synthesis",
    )
    assert fake.original in records and records["YouTube-real__00170"].label == 0
    assert fake.method == "Celeb-synthesis" and records["YouTube-real__00170"].method is None
    assert {v for v, r in records.items() if r.split == "test"} == {
        "YouTube-real__00170",
        "Celeb-synthesis__id1_id0_0003",
        "Celeb-real__id1_0003",
    }
    folds = assign_folds(list(records.values()), FOLD_SETTINGS)
    # no valid split: the train split is folded (every video of a person together), the test split left out
    assert set(folds) == {v for v, r in records.items() if r.split == "train"} and set(folds.values()) == {0, 1}
    assert folds["Celeb-synthesis__id0_id1_0000"] == folds["Celeb-real__id0_0000"] == folds["Celeb-real__id0_0001"]
    assert folds["Celeb-synthesis__id2_id5_0004"] == folds["Celeb-real__id2_0004"] != folds["Celeb-real__id0_0000"]
    (tmp_path / "List_of_testing_videos.txt").write_text("real YouTube-real/00170.mp4\n")
    with pytest.raises(DatasetError, match="line 1: expected"):
        load_dataset(tmp_path)


def test_the_dfdc_preview_reads_dataset_json_with_its_sets_and_people(tmp_path):
    entries = {
        "original_videos/1255229/1255229_A/001.mp4": {"label": "real", "set": "train"},
        "method_A/1255229/1255229_A/1849553_001.mp4": {"label": "fake", "set": "train", "target_id": "1849553"},
        "method_B/643049/643049_B/002.mp4": {"label": "fake", "set": "test"},
        "original_videos/643049/643049_B/002.mp4": {"label": "real", "set": "test"},
        "original_videos/999/999_A/gone.mp4": {"label": "real", "set": "test"},  # not on disk
    }
    for name in list(entries)[:4]:
        touch(tmp_path / name)
    (tmp_path / "dataset.json").write_text(json.dumps(entries))
    assert detect_layout(tmp_path) == "dfdcp"
    records = load_dataset(tmp_path)
    assert len(records) == 4
    by_id = {r.video: r for r in records}
    fake = by_id["method_A__1255229__1255229_A__1849553_001"]
    assert (fake.label, fake.group, fake.source, fake.split, fake.method) == (
        1,
        "1255229",
        "method_A",
        "train",
        "method_A",
    )
    assert by_id["original_videos__643049__643049_B__002"].split == "test"
    entries["method_B/643049/643049_B/002.mp4"]["set"] = "dev"
    (tmp_path / "dataset.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match="set must be train or test"):
        load_dataset(tmp_path)


def test_faceforensics_split_files_give_the_published_split(tmp_path):
    for stem in ["071", "054", "000", "003", "010", "011"]:
        touch(tmp_path / "original_sequences/youtube/c23/videos" / f"{stem}.mp4")
    for method in ["Deepfakes", "NeuralTextures"]:
        for stem in ["071_054", "054_071", "000_003", "010_011"]:
            touch(tmp_path / "manipulated_sequences" / method / "c23/videos" / f"{stem}.mp4")
    touch(tmp_path / "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walking__YVGY8LOK.mp4")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.json").write_text(json.dumps([["071", "054"]]))
    (splits / "val.json").write_text(json.dumps([["000", "003"]]))
    (splits / "test.json").write_text(json.dumps([["010", "011"]]))
    records = {r.video: r for r in load_dataset(tmp_path, "ffpp")}
    assert records["youtube-c23-071"].split == "train" and records["Deepfakes-c23-054_071"].split == "train"
    assert records["NeuralTextures-c23-000_003"].split == "valid" and records["youtube-c23-011"].split == "test"
    assert records["DeepFakeDetection-c23-01_02__walking__YVGY8LOK"].split is None
    assert (
        records["NeuralTextures-c23-000_003"].method == "NeuralTextures" and records["youtube-c23-071"].method is None
    )
    folds = assign_folds(list(records.values()), FOLD_SETTINGS)
    assert folds["youtube-c23-071"] == 1 and folds["Deepfakes-c23-000_003"] == 0
    assert "youtube-c23-010" not in folds and "DeepFakeDetection-c23-01_02__walking__YVGY8LOK" not in folds
    (splits / "test.json").write_text(json.dumps([["071", "099"]]))
    with pytest.raises(DatasetError, match="071 is also in the train split"):
        load_dataset(tmp_path, "ffpp")
