"""inference.detect: one verdict per file (video, photo, broken file), the JSON document, the models
it picks by itself, and the same scores as inference.predict."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.detectors.recipes import WinnerRecipe
from inference.models.ensemble import Member
from inference.pipeline.detector import Ensemble, Run
from inference.pipeline.faces import VideoFaces
from inference.prediction import predict_folder as predict
from inference.serving import detection as detect
from inference.serving.detection import newest_run_checkpoints
from inference.serving.verdict import judgement
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint, score_tolerance, shared_data

# detect (with and without --explain) and predict over the same videos: each frame through MTCNN once
# (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)  # its `remembered_detections` fixture
pytestmark = pytest.mark.usefixtures("remembered_detections")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detect_models")
    return [save_tiny_checkpoint(folder / f"tiny_0_{seed}_best.pt", seed) for seed in (1, 2)]


@pytest.fixture(scope="module")
def mixed_folder(demo_world, tmp_path_factory):
    """The demo world's two test videos, a photo, a broken video and a text file."""
    folder = tmp_path_factory.mktemp("mixed")
    for video in sorted((demo_world / "test_videos").glob("*.mp4")):
        (folder / video.name).symlink_to(video)
    Image.fromarray(builtin_photos()["astronaut"]).save(folder / "astronaut.jpg")
    (folder / "broken.mp4").write_bytes(os.urandom(3000))
    (folder / "notes.txt").write_text("not media\n")
    return folder


def _documents(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.slow
def test_each_file_gets_one_document_and_videos_score_as_predict_scores_them(
    mixed_folder, checkpoints, demo_world, tmp_path, capsys
):
    models = ["--models", *map(str, checkpoints), "--runtime", "torch"]
    assert detect.main([str(mixed_folder), *models, "--json"]) == 1, "1: a file could not be judged"
    documents = {Path(d["file"]).name: d for d in _documents(capsys)}
    videos = sorted(p.name for p in (demo_world / "test_videos").glob("*.mp4"))
    assert sorted(documents) == sorted([*videos, "astronaut.jpg", "broken.mp4"]), "notes.txt is not media"
    broken = documents["broken.mp4"]
    assert broken["verdict"] is None and broken["error"]["stage"] == "decode"
    assert "not a readable video container" in broken["error"]["message"]
    photo = documents["astronaut.jpg"]
    assert photo["kind"] == "photo" and photo["frames"] == {
        "sampled": 1,
        "with_face": 1,
        "without_face": 0,
        "requested": 1,
        "decoded": 1,
    }
    assert photo["partial_reason"] is None
    assert photo["faces"] == 1 and photo["probability"] == pytest.approx(photo["people"][0]["probability"], abs=1e-4)
    for name in videos:
        document = documents[name]
        assert document["kind"] == "video" and document["error"] is None
        assert document["verdict"] == ("FAKE" if document["probability"] > 0.5 else "REAL")
        assert [m["name"] for m in document["models"]] == [c.name for c in checkpoints]
        assert len(document["per_frame"]) == document["frames"]["sampled"] == 32
        assert (
            sum(f["faces"] for f in document["per_frame"])
            == document["faces"]
            == sum(p["faces"] for p in document["people"])
        )
        assert set(document["seconds"]) == {"decode", "detect", "classify", "total"}

    submission = tmp_path / "submission.csv"
    predict.main(
        [
            "--test-dir",
            str(demo_world / "test_videos"),
            *models,
            "--detector-scale",
            "rule",
            "--output",
            str(submission),
        ]
    )
    with open(submission, newline="") as handle:
        expected = {row["filename"]: float(row["label"]) for row in csv.DictReader(handle)}
    for name in videos:
        assert documents[name]["probability"] == pytest.approx(expected[name], abs=score_tolerance(1e-4)), name


def test_lines_for_people_and_errors_for_missing_files(mixed_folder, checkpoints, capsys):
    code = detect.main(
        [str(mixed_folder / "astronaut.jpg"), str(mixed_folder / "gone.mp4"), "--models", str(checkpoints[0])]
    )
    assert code == 1
    photo_line, missing_line = capsys.readouterr().out.splitlines()
    assert photo_line.split()[0] in {"FAKE", "REAL"} and "astronaut.jpg  (1 face, 1 person)" in photo_line
    assert missing_line == f"error: {mixed_folder / 'gone.mp4'}: no such file"


@pytest.mark.shared_data
def test_a_photo_of_the_sample_faces(checkpoints, capsys):
    photo = shared_data("faces", "two_people.jpg")
    assert detect.main([str(photo), "--models", str(checkpoints[0]), "--json"]) == 0
    [document] = _documents(capsys)
    assert document["kind"] == "photo" and document["faces"] == len(document["people"]) == 2


def judged(path, faces, per_model, members, strategy, threshold, by_person=False, **verdict) -> dict:
    """judgement of the faces given each frame model's face probabilities, scored as detect scores them
    (the winner's recipe of `members` aggregating by `strategy`, per person with `by_person`)."""
    recipe = WinnerRecipe(members, strategy)
    run = Run(torch.device("cpu"), per_person=by_person)
    [scored] = Ensemble([recipe]).combine([faces], [[list(per_model)]], run)
    return judgement(path, faces, scored, recipe, threshold, by_person, **verdict)


def test_judgement_scores_people_frames_and_the_verdict():
    faces = VideoFaces(Path("clip.mp4"), [0, 10, 20])
    # person A in every frame on the left, person B in frames 0 and 20 on the right
    for frame, boxes in (
        (0, [[0, 0, 10, 10], [50, 0, 60, 10]]),
        (10, [[1, 0, 11, 10]]),
        (20, [[2, 0, 12, 10], [50, 1, 60, 11]]),
    ):
        for box in boxes:
            faces.crops.append(np.zeros((4, 4, 3), np.uint8))
            faces.face_frames.append(frame)
            faces.boxes.append(box)
            faces.found.append("detected")
    members = [
        Member(name, None, "resnet18", 64, (0,) * 3, (1,) * 3, weight) for name, weight in (("a", 1.0), ("b", 3.0))
    ]
    per_model = [np.array([0.1, 0.9, 0.1, 0.1, 0.7]), np.array([0.3, 0.5, 0.3, 0.3, 0.9])]
    document = judged(Path("clip.mp4"), faces, per_model, members, "mean", threshold=0.4)
    assert document["probability"] == pytest.approx((1 * 0.38 + 3 * 0.46) / 4, abs=1e-4)
    assert document["verdict"] == "FAKE" and document["kind"] == "video"
    person_a, person_b = document["people"]
    assert [t["frame"] for t in person_a["track"]] == [0, 10, 20] and [t["frame"] for t in person_b["track"]] == [0, 20]
    assert person_a["probability"] == pytest.approx((0.1 + 3 * 0.3) / 4, abs=1e-4)
    assert person_b["probability"] == pytest.approx((0.8 + 3 * 0.7) / 4, abs=1e-4)
    assert person_b["track"][0]["box"] == [50.0, 0.0, 60.0, 10.0]
    assert [f["probability"] for f in document["per_frame"]] == pytest.approx([0.6, 0.25, 0.85], abs=1e-4)
    assert [m["score"] for m in document["models"]] == pytest.approx([0.38, 0.46])
    by_person = judged(Path("clip.mp4"), faces, per_model, members, "mean", threshold=0.8, by_person=True)
    assert by_person["probability"] == pytest.approx(person_b["probability"], abs=1e-4)
    assert by_person["verdict"] == "REAL" and by_person["aggregation"] == {"strategy": "mean", "per_person": True}


def test_without_models_it_takes_the_newest_runs_best_checkpoints(tmp_path, monkeypatch, capsys):
    weights = tmp_path / "work" / "weights"
    weights.mkdir(parents=True)
    old = save_tiny_checkpoint(weights / "old_0_111_best.pt", 0)
    os.utime(old, (1e9, 1e9))
    newest = [save_tiny_checkpoint(weights / name, 0) for name in ("new_0_111_best.pt", "new_1_555_best.pt")]
    save_tiny_checkpoint(weights / "new_0_111_last.pt", 0)
    assert newest_run_checkpoints(weights) == newest
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(tmp_path / "no_cache"))
    photo = tmp_path / "face.png"
    Image.fromarray(builtin_photos()["astronaut"]).save(photo)
    assert detect.main([str(photo), "--json", "--runtime", "torch"]) == 0
    [document] = _documents(capsys)
    assert [m["name"] for m in document["models"]] == ["new_0_111_best.pt", "new_1_555_best.pt"]
    for path in [old, *newest]:
        path.unlink()
    assert detect.main([str(photo)]) == 2
    error = capsys.readouterr().err
    assert "error: no models" in error and "python -m inference.weights fetch original" in error


def test_explain_writes_heatmaps_a_frame_a_plot_per_file_and_one_report(mixed_folder, checkpoints, tmp_path, capsys):
    out = tmp_path / "explained"
    models = ["--models", str(checkpoints[0]), "--runtime", "torch"]
    assert detect.main([str(mixed_folder), *models, "--json", "--explain", str(out)]) == 1
    documents = _documents(capsys)
    for document in documents:
        if document["error"]:
            assert "explanation" not in document
            continue
        explanation = document["explanation"]
        assert len(explanation["heatmaps"]) == min(6, document["faces"])
        probabilities = [h["probability"] for h in explanation["heatmaps"]]
        assert probabilities == sorted(probabilities, reverse=True), "the most suspicious faces first"
        frames = [f["probability"] for f in document["per_frame"] if f["probability"] is not None]
        assert probabilities[0] == pytest.approx(max(frames), abs=1e-4)
        assert explanation["frame"].endswith(f"frame{explanation['heatmaps'][0]['frame']}.jpg")
        assert (explanation["plot"] is None) == (document["kind"] == "photo"), "a plot for videos only"
        for path in [explanation["frame"], *(h["path"] for h in explanation["heatmaps"])] + [explanation["plot"]] * (
            document["kind"] == "video"
        ):
            assert Path(path).is_file() and Path(path).parent == out / Path(document["file"]).name
    page = (out / "report.html").read_text()
    assert page.count("<section>") == len(documents) == 4
    assert "error: not a readable video container" in page and page.count("data:image/") > 10
