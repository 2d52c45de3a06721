"""Photo datasets: the 140k faces layout and its splits as folds, sets of face crops without
detection, and a tiny such set trained, predicted and scored end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.video_io import read_frames
from inference.prediction import predict_folder as predict
from inference.scoring import submission_scoring as score
from preprocess import run_all
from preprocess.datasets import detect_layout, load_dataset
from preprocess.detect_faces import whole_frame_boxes
from preprocess.faces.crops import crop_face
from preprocess.faces.face_detector import TRAIN_THRESHOLDS, FaceDetector
from preprocess.folds import assign_folds
from tests.conftest import REPO_ROOT, dfdc_metadata, shared_data
from training import train

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

SPLITS = {"train": 8, "valid": 3, "test": 3}


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _layout(root: Path, images: dict[str, list[np.ndarray]]) -> Path:
    """The 140k set's folders: root/real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/*.jpg."""
    base = root / "real_vs_fake" / "real-vs-fake"
    for label, pictures in images.items():
        start = 0
        for split, count in SPLITS.items():
            for index, picture in enumerate(pictures[start : start + count]):
                _write(base / split / label / f"{label}{start + index:03d}.jpg", picture)
            start += count
    return base


def test_the_140k_layout_is_found_and_its_splits_become_the_folds(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (14, 32, 32, 3), dtype=np.uint8)
    base = _layout(tmp_path, {"real": list(noise), "fake": list(noise)})
    assert detect_layout(tmp_path) == "splits"
    records = load_dataset(tmp_path)
    assert len(records) == 28 and {r.split for r in records} == {"train", "valid", "test"}
    record = next(r for r in records if r.path == base / "valid" / "fake" / "fake008.jpg")
    assert (record.video, record.label, record.split) == ("valid__fake__fake008", 1, "valid")
    folds = assign_folds(records, {"k": 5, "dfdc_parts_per_fold": 3, "dfdc_folds": 16})
    assert {r.video: folds.get(r.video) for r in records} == {
        r.video: {"valid": 0, "train": 1, "test": None}[r.split] for r in records
    }, "valid is fold 0, train fold 1, test stays out"


def test_a_face_crop_is_its_own_box(tmp_path):
    _write(tmp_path / "face.png", np.zeros((50, 40, 3), np.uint8))
    assert whole_frame_boxes(tmp_path / "face.png", 10, "opencv") == {0: [[0.0, 0.0, 40.0, 50.0]]}


def _face_crops(path: Path, detector: FaceDetector, frames=None) -> list[np.ndarray]:
    crops = []
    for frame in read_frames(path, frames).values():
        for box in detector.detect(frame).boxes:
            crop = crop_face(frame, box)
            crops.append(cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA))
    return crops


@pytest.fixture(scope="module")
def tiny_140k(demo_world, tmp_path_factory):
    """Real: faces cut from the sample photos (and their mirror images); fake: faces of the demo
    world's fake videos. 14 of each, in the 140k set's folders."""
    detector = FaceDetector(TRAIN_THRESHOLDS, scale=1.0, device="cpu")
    real = []
    for photo in sorted(shared_data("faces").glob("*.jpg")):
        crops = _face_crops(photo, detector)
        real += crops + [np.ascontiguousarray(crop[:, ::-1]) for crop in crops]
    fake = []
    for video in sorted(p for p, e in dfdc_metadata(demo_world).items() if e["label"] == "FAKE"):
        fake += _face_crops(video, detector, range(0, 60, 10))
    assert len(real) >= 14 and len(fake) >= 14, (len(real), len(fake))
    root = tmp_path_factory.mktemp("faces140k")
    _layout(root, {"real": real[:14], "fake": fake[:14]})
    return root


@pytest.mark.shared_data
def test_a_tiny_140k_set_trains_predicts_and_scores(tiny_140k, tmp_path):
    config = tmp_path / "preprocess.yaml"
    config.write_text("faces_are_cropped: true\ndetection:\n  every: 1\n")
    assert run_all.main(["--root-dir", str(tiny_140k), "--config", str(config), "--workers", "1"]) == 0
    with open(tiny_140k / "folds.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["fold"] for row in rows} == {"0", "1"} and len(rows) == 2 * (SPLITS["train"] + SPLITS["valid"])
    assert not any(row["video"].startswith("test__") for row in rows)
    crop = next((tiny_140k / "crops").rglob("*.png"))
    assert cv2.imread(str(crop)).shape[:2] == (128, 128), "the whole photo is the crop"

    out = tmp_path / "weights"
    flags = ["--data-dir", str(tiny_140k), "--fold", "0", "--output-dir", str(out), "--workers", "0", "--epochs", "1"]
    small = ["--batches-per-epoch", "2", "--batch-size", "4", "--set", "model.pretrained=false"]
    small += ["--set", "data.min_class_crops=3"]  # a tiny set: 3 photos of each class to validate on
    train.main(
        ["--config", str(REPO_ROOT / "configs" / "resnet34.yaml"), *flags, *small, "--set", "model.input_size=64"]
    )
    best = out / "resnet34_0_111_best.pt"
    assert best.is_file()

    test_dir = tiny_140k / "real_vs_fake" / "real-vs-fake" / "test"
    submission = tmp_path / "submission.csv"
    argv = ["--test-dir", str(test_dir), "--recursive", "--faces-are-cropped", "--models", str(best)]
    assert predict.main([*argv, "--output", str(submission), "--runtime", "torch"]) == 0
    with open(submission, newline="") as handle:
        names = [row["filename"] for row in csv.DictReader(handle)]
    assert names == sorted(f"{label}/{label}{i:03d}.jpg" for label in ("fake", "real") for i in range(11, 14))
    details = [json.loads(line) for line in (tmp_path / "details.jsonl").read_text().splitlines()]
    assert all(d["boxes_found"] == {"detected": 0, "retried": 0, "interpolated": 0, "whole frame": 1} for d in details)
    assert score.main(["--submission", str(submission), "--labels", str(test_dir), "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "score.json").read_text())
    assert result["overall"]["videos"] == 6 and set(result["by_group"]) == {"real", "fake"}
