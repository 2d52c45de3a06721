"""Checks shared by the preprocessing tests: what a finished run must have produced."""

from __future__ import annotations

import csv

import cv2
import numpy as np

from common.video_io import read_frames
from preprocess.datasets import VideoRecord
from preprocess.faces.crops import crop_region
from preprocess.outputs import boxes_path, crops_dir, diffs_dir, landmarks_dir, parse_crop_name, read_boxes


def read_folds(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_crops_at_original_boxes(out, fake: VideoRecord, original: VideoRecord, frames_to_check: int = 3) -> None:
    """The fake's crops are its own pixels cut exactly where the original's boxes say."""
    boxes = read_boxes(boxes_path(out, original.video))
    crops = sorted(crops_dir(out, fake.video).glob("*.png"), key=lambda p: parse_crop_name(p.name))
    assert crops, f"no crops for {fake.video}"
    chosen = crops[:: max(1, len(crops) // frames_to_check)][:frames_to_check]
    frames = read_frames(fake.path, {parse_crop_name(p.name)[0] for p in chosen})
    for crop_path in chosen:
        frame_index, face = parse_crop_name(crop_path.name)
        x1, y1, x2, y2 = crop_region(boxes[frame_index][face], frames[frame_index].shape)
        expected = frames[frame_index][y1:y2, x1:x2]
        saved = cv2.cvtColor(cv2.imread(str(crop_path)), cv2.COLOR_BGR2RGB)
        assert saved.shape == expected.shape and np.array_equal(saved, expected), crop_path


def assert_diffs_brighter_inside_face(out, fake: VideoRecord) -> None:
    inside, border = [], []
    for path in sorted(diffs_dir(out, fake.video).glob("*_diff.png")):
        diff = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        height, width = diff.shape
        # the crop grows the face box by a third per side: the box is the middle 3/5
        inside.append(diff[height // 5 : height - height // 5, width // 5 : width - width // 5].mean())
        ring = np.ones_like(diff, bool)
        ring[height // 10 : height - height // 10, width // 10 : width - width // 10] = False
        border.append(diff[ring].mean())
    assert inside, f"no diffs for {fake.video}"
    assert np.mean(inside) > 1.5 * np.mean(border), (fake.video, np.mean(inside), np.mean(border))


def assert_pipeline_complete(out, records: list[VideoRecord]) -> None:
    """Every step's outputs for a dataset whose videos are all readable and have faces."""
    ids = {record.video: record for record in records}
    rows = read_folds(out / "folds.csv")
    fold_of = {}
    for row in rows:
        assert fold_of.setdefault(row["video"], row["fold"]) == row["fold"]
    for record in records:
        original = ids.get(record.original) if record.is_fake else None
        source = original or record
        assert boxes_path(out, source.video).exists()
        assert record.video in fold_of, f"{record.video} has no crops in folds.csv"
        if original is not None:
            assert fold_of[record.video] == fold_of[original.video], record.video
            assert not boxes_path(out, record.video).exists()
            assert_crops_at_original_boxes(out, record, original)
            assert_diffs_brighter_inside_face(out, record)
            assert not landmarks_dir(out, record.video).exists()
        else:
            assert list(landmarks_dir(out, record.video).glob("*.npy")), record.video
    for row in rows:
        record = ids[row["video"]]
        assert (crops_dir(out, record.video) / row["file"]).exists()
        assert int(row["frame"]) == parse_crop_name(row["file"])[0]
        assert int(row["label"]) == record.label
        assert row["original"] == (record.original if record.original in ids else record.video)
