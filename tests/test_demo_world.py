"""The generated demo world: DFDC layout, decodable videos, detectable faces, honest fakes."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.cli import InputError
from common.video_io import iter_frames, probe_video
from preprocess import make_demo_data
from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, RESOLUTION_RULE, FaceDetector
from tests.conftest import dfdc_metadata

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_layout_is_dfdc_and_every_fake_names_a_present_original(demo_world):
    entries = dfdc_metadata(demo_world)
    assert len(entries) == 6
    labels = [entry["label"] for entry in entries.values()]
    assert labels.count("REAL") == 2 and labels.count("FAKE") == 4
    parts = {path.parent.name for path in entries}
    assert len(parts) == 2, "two originals should land in two parts (and so two folds)"
    for path, entry in entries.items():
        assert path.is_file(), path
        assert entry["split"] == "train"
        if entry["label"] == "FAKE":
            original = path.parent / entry["original"]
            assert entries[original]["label"] == "REAL"
        else:
            assert entry["original"] is None
    on_disk = {p for p in demo_world.glob("dfdc_train_part_*/*.mp4")}
    assert on_disk == set(entries)


def test_test_videos_are_labelled_and_not_in_training(demo_world):
    with open(demo_world / "test_videos" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["filename"] for row in rows) == sorted(p.name for p in demo_world.glob("test_videos/*.mp4"))
    assert {row["label"] for row in rows} == {"0", "1"}
    training_names = {path.name for path in dfdc_metadata(demo_world)}
    assert not training_names & {row["filename"] for row in rows}


def test_every_video_decodes_within_the_clip_format(demo_world):
    manifest = json.loads((demo_world / "demo_world.json").read_text())
    made = {clip["name"]: clip for clip in manifest["clips"]}
    for path in sorted(demo_world.rglob("*.mp4")):
        info = probe_video(path)
        decoded = sum(1 for _ in iter_frames(path))
        assert decoded == info.frame_count > 0, path
        assert 320 <= max(info.width, info.height) <= 1280
        assert 2.0 <= info.frame_count / info.fps <= 5.1
        if path.name in made:
            assert (info.width, info.height) == (made[path.name]["width"], made[path.name]["height"])


@pytest.mark.parametrize("scale", [0.5, RESOLUTION_RULE], ids=["half-scale", "resolution-rule"])
def test_mtcnn_finds_exactly_one_face_in_sampled_frames(demo_world, scale):
    detector = FaceDetector(INFERENCE_THRESHOLDS, scale=scale, device="cpu")
    single, total = 0, 0
    for path in sorted(demo_world.rglob("*.mp4")):
        count = probe_video(path).frame_count
        for _, frame in iter_frames(path, np.linspace(0, count - 1, 4).astype(int)):
            single += len(detector.detect(frame)) == 1
            total += 1
    assert total == 32
    assert single / total >= 0.95, f"exactly one face in only {single} of {total} frames"


def test_fakes_differ_from_their_originals_inside_the_face_box_only(demo_world):
    detector = FaceDetector(INFERENCE_THRESHOLDS, RESOLUTION_RULE, device="cpu")
    for path, entry in dfdc_metadata(demo_world).items():
        if entry["label"] != "FAKE":
            continue
        original = path.parent / entry["original"]
        index = probe_video(original).frame_count // 2
        real_frame = dict(iter_frames(original, [index]))[index]
        fake_frame = dict(iter_frames(path, [index]))[index]
        x1, y1, x2, y2 = detector.detect(real_frame).boxes[0].astype(int)
        difference = np.abs(real_frame.astype(np.float32) - fake_frame).mean(axis=2)
        inside = np.zeros(difference.shape, bool)
        inside[max(0, y1) : y2, max(0, x1) : x2] = True
        inside_mean, outside_mean = difference[inside].mean(), difference[~inside].mean()
        assert inside_mean > 4 * outside_mean, (path.name, inside_mean, outside_mean)
        assert outside_mean < 3.0, (path.name, outside_mean)


def test_rerun_remakes_only_missing_clips_and_is_deterministic(demo_world, tmp_path):
    demo_world = Path(shutil.copytree(demo_world, tmp_path / "world"))  # others read the shared one meanwhile
    manifest = json.loads((demo_world / "demo_world.json").read_text())
    clip = next(c for c in manifest["clips"] if c["spec"]["split"] == "test")
    names = [clip["name"]] + [fake["name"] for fake in clip["fakes"]]
    paths = [demo_world / "test_videos" / name for name in names]
    before = {path: _md5(path) for path in paths}
    untouched = next(demo_world.glob("dfdc_train_part_*/*.mp4"))
    untouched_mtime = untouched.stat().st_mtime_ns
    for path in paths:
        path.unlink()
    # remade by the default --workers (a pool of two processes): the bytes the fixture made in one
    make_demo_data.main(["--out", str(demo_world), "--videos", "6", "--test-videos", "2", "--seed", "1"])
    assert {path: _md5(path) for path in paths} == before
    assert untouched.stat().st_mtime_ns == untouched_mtime
    assert not list(demo_world.rglob("*.partial*"))


def test_other_settings_on_an_existing_world_are_refused(demo_world):
    with pytest.raises(InputError, match="other settings"):
        make_demo_data.main(["--out", str(demo_world), "--videos", "9", "--seed", "1"])
