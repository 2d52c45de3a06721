"""Pure pieces of preprocessing: crop geometry, detection scale, folds, failures file, shards, adapters."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.cli import InputError
from common.io_utils import write_json_atomic
from common.video_io import VideoWriter
from preprocess.datasets import FAKE, REAL, DatasetError, VideoRecord, load_dataset
from preprocess.detect_faces import detect_video_faces
from preprocess.faces.crops import crop_face, crop_region
from preprocess.faces.face_detector import FaceDetections, resolution_scale
from preprocess.folds import assign_folds
from preprocess.landmarks import Landmarks
from preprocess.outputs import read_boxes
from preprocess.steps import load_config, parse_shard, shard_records, update_failures

FOLD_SETTINGS = load_config()["folds"]


def test_crop_region_grows_a_third_per_side_in_integer_pixels():
    assert crop_region([10.7, 20.2, 110.9, 150.5], (300, 200)) == (0, 0, 143, 193)
    assert crop_region([60.0, 90.0, 90.0, 120.0], (300, 200)) == (50, 80, 100, 130)
    assert crop_region([150.0, 250.0, 199.9, 299.0], (300, 200)) == (134, 234, 200, 300)
    frame = np.arange(300 * 200 * 3, dtype=np.uint32).reshape(300, 200, 3)
    assert np.array_equal(crop_face(frame, [60.0, 90.0, 90.0, 120.0]), frame[80:130, 50:100])


@pytest.mark.parametrize("longer,scale", [(299, 2.0), (300, 1.0), (1000, 1.0), (1001, 0.5), (1920, 0.5), (1921, 0.33)])
def test_resolution_rule(longer, scale):
    assert resolution_scale(longer, 100) == scale and resolution_scale(100, longer) == scale


def _record(video, label=REAL, original=None, source="dfdc_train_part_0"):
    return VideoRecord(video, Path(f"{video}.mp4"), label, original, original or video, source)


def test_dfdc_folds_follow_parts_and_the_last_fold_takes_the_rest():
    records = [_record(f"r{part}", source=f"dfdc_train_part_{part}") for part in (0, 2, 3, 44, 45, 49)]
    folds = assign_folds(records, FOLD_SETTINGS)
    assert folds == {"r0": 0, "r2": 0, "r3": 1, "r44": 14, "r45": 15, "r49": 15}


def test_a_fake_follows_its_original_even_from_another_part():
    records = [_record("a", source="dfdc_train_part_0"), _record("b", FAKE, "a", source="dfdc_train_part_30")]
    assert assign_folds(records, FOLD_SETTINGS) == {"a": 0, "b": 0}


def test_group_k_fold_keeps_groups_together_and_uses_every_fold():
    records = []
    for group in range(12):
        records.append(_record(f"g{group}", source="csv"))
        records += [_record(f"g{group}_f{k}", FAKE, f"g{group}", source="csv") for k in range(group % 3 + 1)]
    folds = assign_folds(records, FOLD_SETTINGS)
    assert set(folds.values()) == set(range(5))
    for record in records:
        assert folds[record.video] == folds[record.group]


def test_failures_file_keeps_other_rows_and_replaces_reprocessed_ones(tmp_path):
    path = tmp_path / "preprocess_failures.csv"
    update_failures(
        path,
        "detect_faces",
        {"a", "b"},
        [
            {"video": "a", "step": "detect_faces", "reason": "bad"},
            {"video": "b", "step": "detect_faces", "reason": "worse"},
        ],
    )
    update_failures(path, "extract_crops", {"a"}, [{"video": "a", "step": "extract_crops", "reason": "no boxes"}])
    update_failures(path, "detect_faces", {"b"}, [])
    with open(path, newline="") as handle:
        rows = {(row["video"], row["step"]) for row in csv.DictReader(handle)}
    assert rows == {("a", "detect_faces"), ("a", "extract_crops")}


def test_shards_partition_the_videos():
    records = [_record(f"v{i:02d}") for i in range(11)]
    shares = [shard_records(records, (index, 3)) for index in range(3)]
    assert sorted(r.video for share in shares for r in share) == sorted(r.video for r in records)
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shard(bad)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0")
    return path


def test_faceforensics_names_give_originals(tmp_path):
    _touch(tmp_path / "original_sequences/youtube/c23/videos/004.mp4")
    _touch(tmp_path / "original_sequences/actors/c23/videos/01__exit_phone_room.mp4")
    _touch(tmp_path / "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4")
    _touch(tmp_path / "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__exit_phone_room__YVGY8LOK.mp4")
    records = {r.video: r for r in load_dataset(tmp_path)}
    assert records["NeuralTextures-c23-004_982"].original == "youtube-c23-004"
    assert records["NeuralTextures-c23-004_982"].source == "NeuralTextures"
    dfd = records["DeepFakeDetection-c23-01_02__exit_phone_room__YVGY8LOK"]
    assert dfd.original == "actors-c23-01__exit_phone_room" and dfd.original in records


def test_csv_layout_errors_name_the_file_and_line(tmp_path):
    _touch(tmp_path / "a.mp4")
    (tmp_path / "dataset.csv").write_text("path,label\na.mp4,REAL\nb.mp4,perhaps\n")
    with pytest.raises(DatasetError, match=r"dataset.csv: line 3: label must be"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.csv").write_text("path,label\n../outside.mp4,1\n")
    with pytest.raises(DatasetError, match=r"dataset.csv: entry '../outside.mp4' is not a plain file name"):
        load_dataset(tmp_path)


def test_csv_layout_links_originals_and_groups(tmp_path):
    for name in ("x/real.mp4", "x/fake.mp4", "y/other.mp4"):
        _touch(tmp_path / name)
    (tmp_path / "list.csv").write_text(
        "path,label,original,group\nx/real.mp4,0,,\nx/fake.mp4,1,x/real.mp4,\ny/other.mp4,FAKE,,person7\n"
    )
    records = {r.video: r for r in load_dataset(tmp_path)}
    assert records["x__fake"].original == "x__real" and records["x__fake"].group == "x__real"
    assert records["y__other"].group == "person7" and records["y__other"].label == FAKE


def test_folders_layout_takes_videos_and_photos(tmp_path):
    _touch(tmp_path / "real/a.mp4")
    _touch(tmp_path / "real/people/b.jpg")
    _touch(tmp_path / "fake/c.mov")
    _touch(tmp_path / "fake/notes.txt")
    records = {r.video: r for r in load_dataset(tmp_path)}
    assert set(records) == {"real__a", "real__people__b", "fake__c"}
    assert records["fake__c"].label == FAKE and records["fake__c"].original is None


def test_a_partial_config_keeps_the_recipe_defaults_and_typos_are_refused(tmp_path):
    partial = tmp_path / "fast.yaml"
    partial.write_text("detection:\n  every: 3\n")
    config = load_config(partial)
    assert config["detection"]["every"] == 3 and config["detection"]["thresholds"] == [0.85, 0.95, 0.95]
    typo = tmp_path / "typo.yaml"
    typo.write_text("detection:\n  evry: 3\n")
    with pytest.raises(InputError, match="unknown preprocessing setting 'evry'"):
        load_config(typo)


class _TwoFaces:
    """A detector that finds a small, very probable face and a large, less probable one."""

    small = FaceDetections(
        np.array([[5, 5, 25, 25]], np.float32), np.array([0.999], np.float32), np.full((1, 5, 2), 10, np.float32)
    )
    large = FaceDetections(
        np.array([[20, 10, 90, 95]], np.float32), np.array([0.91], np.float32), np.full((1, 5, 2), 50, np.float32)
    )

    def detect(self, image) -> FaceDetections:
        both = [
            np.concatenate([getattr(self.small, k), getattr(self.large, k)]) for k in ("boxes", "probs", "landmarks")
        ]
        return FaceDetections(*both)


def test_landmarks_are_those_of_the_largest_face_as_the_original_took(tmp_path):
    (tmp_path / "crops" / "r0").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "crops" / "r0" / "0_0.png"), np.zeros((100, 100, 3), np.uint8))
    step = Landmarks(output_dir=tmp_path, records=[_record("r0")], config=load_config(), device="cpu")
    step.detector = _TwoFaces()
    assert step.process(_record("r0")) == {"landmarks": 1, "crops without landmarks": 0}
    saved = np.load(tmp_path / "landmarks" / "r0" / "0_0.npy")
    assert saved.shape == (5, 2) and np.all(saved == 50), "the large face's points, not the most probable face's"
    assert _TwoFaces().detect(None).largest() == 1


class _OneBox:
    """A detector that finds one face, its box as the original's half-size detection doubled it."""

    half_size_box = np.array([24.37, 30.1, 49.99876, 70.6], np.float32)

    def detect_batch(self, frames):
        box = self.half_size_box[None] / np.float32(0.5)
        return [FaceDetections(box, np.ones(1, np.float32), np.zeros((1, 5, 2), np.float32)) for _ in frames]


def test_stored_boxes_crop_exactly_where_the_original_cropped(tmp_path):
    with VideoWriter(tmp_path / "clip.mp4", fps=25, width=160, height=120) as writer:
        for _ in range(3):
            writer.write(np.zeros((120, 160, 3), np.uint8))
    write_json_atomic(tmp_path / "boxes.json", detect_video_faces(_OneBox(), tmp_path / "clip.mp4", 1, 2, "opencv"))
    stored = read_boxes(tmp_path / "boxes.json")
    assert sorted(stored) == [0, 1, 2]
    # The original kept half-size boxes and cropped at int(b * 2): 99.99752 must stay 99, not round to 100.
    original = [int(float(b) * 2) for b in _OneBox.half_size_box.tolist()]
    assert original == [48, 60, 99, 141]
    assert [int(v) for v in stored[0][0]] == original
    assert crop_region(stored[0][0], (120, 160)) == crop_region(original, (120, 160))


def test_atomic_outputs_get_the_permissions_open_would_give(tmp_path):
    import os

    from common.io_utils import atomic_path, write_json_atomic

    mask = os.umask(0o027)
    os.umask(mask)
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    with atomic_path(tmp_path / "b.bin") as temporary:
        temporary.write_bytes(b"1")
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600


@pytest.mark.parametrize(
    "omp, workers, affinity, expected",
    [
        (None, 1, 8, 8),  # every core this process may use
        (None, 4, 8, 2),  # shared out between the workers
        (None, 3, 2, 1),  # at least one each
        ("1", 1, 8, 1),  # a test worker's share (tests/conftest.py sets it) or the user's choice
        ("6", 2, 8, 3),
        ("lots", 2, 8, 4),  # not a whole number: ignored
        ("0", 1, 4, 4),
    ],
)
def test_a_steps_threads_are_its_share_of_the_cores_or_omp_num_threads(monkeypatch, omp, workers, affinity, expected):
    """In-process steps took os.cpu_count() threads even where OMP_NUM_THREADS gave the process one
    (two pytest-xdist workers on 2 cores each ran 2 threads: test_dfdc_mini_sample 24 s -> 39 s)."""
    from preprocess import steps

    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr(steps.os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    assert steps.threads_per_worker(workers) == expected


def test_workers_fork_from_a_server_that_imported_torch_once():
    """Spawned workers each imported torch and the step again (~3 CPU-s apiece; run_all's four steps
    with --workers 2 on the demo world: 38.5 s, against 13.9 s from a fork server, same outputs)."""
    import multiprocessing
    from multiprocessing import forkserver

    from common.processes import worker_context

    context = worker_context("torch", "preprocess.extract_crops")
    if "forkserver" not in multiprocessing.get_all_start_methods():
        assert context.get_start_method() == "spawn"
        return
    assert context.get_start_method() == "forkserver"
    assert forkserver._forkserver._preload_modules == ["torch", "preprocess.extract_crops"]
