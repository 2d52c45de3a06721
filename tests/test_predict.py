"""inference.predict end to end: one row per video whatever happens, and the original's scores."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from common import cli
from common.video_io import VideoWriter, probe_video, read_frames
from inference.pipeline.aggregate import STRATEGIES
from inference.pipeline.faces import interpolated_boxes
from inference.prediction import predict_folder as predict
from inference.scoring import submission_scoring as score
from preprocess.demo_world.identities import builtin_photos
from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, FaceDetector
from tests.conftest import REPO_ROOT, dfdc_metadata, save_tiny_checkpoint, score_tolerance, shared_data
from tests.original_checkpoints import RunsACommand, original_state_dict, save_numpy1_checkpoint
from tests.original_scoring import original_read_frames, original_video_score
from training.models.zoo import create_model

# predict run again over the same videos (batch sizes, a second member, one process and two): each
# frame through MTCNN once in this process (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)  # its `remembered_detections` fixture
pytestmark = pytest.mark.usefixtures("remembered_detections")


def _rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


def test_every_file_gets_a_row_and_every_failure_is_named(demo_world, small_checkpoint, tmp_path):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    good = next(p for p, e in sorted(dfdc_metadata(demo_world).items()) if e["label"] == "REAL")
    (test_dir / "good.mp4").symlink_to(good)
    (test_dir / "empty.mp4").write_bytes(b"")
    (test_dir / "text.mp4").write_text("no video here\n" * 40)
    (test_dir / "truncated.mp4").write_bytes(good.read_bytes()[:4000])
    with VideoWriter(test_dir / "noface.mp4", fps=25, width=160, height=120) as writer:
        for i in range(30):
            writer.write(np.full((120, 160, 3), 40 + i, np.uint8))
    out = tmp_path / "out" / "submission.csv"
    assert predict.main(["--test-dir", str(test_dir), "--models", str(small_checkpoint), "--output", str(out)]) == 0
    rows = _rows(out)
    assert [row["filename"] for row in rows] == sorted(p.name for p in test_dir.iterdir())
    scores = {row["filename"]: float(row["label"]) for row in rows}
    errors = {row["filename"]: row for row in _rows(out.parent / "errors.csv")}
    assert set(errors) == {"empty.mp4", "text.mp4", "truncated.mp4", "noface.mp4"}
    assert errors["noface.mp4"]["stage"] == "detect" and "no face" in errors["noface.mp4"]["reason"]
    assert errors["empty.mp4"]["stage"] == "decode" and "0 bytes" in errors["empty.mp4"]["reason"]
    assert all(scores[name] == 0.5 for name in errors)
    assert 0.0 < scores["good.mp4"] < 1.0 and scores["good.mp4"] != 0.5
    details = {row["filename"]: row for row in _details(out.parent / "details.jsonl")}
    assert sorted(details) == sorted(scores), "one line per video"
    assert all(details[name]["error"]["stage"] == errors[name]["stage"] for name in errors)
    good = details["good.mp4"]
    frames = min(32, probe_video(test_dir / "good.mp4").frame_count)
    assert good["error"] is None and good["score"] == pytest.approx(scores["good.mp4"], abs=1e-6)
    assert good["frames_sampled"] == len(good["faces_per_frame"]) == frames
    assert good["frames_with_face"] == sum(count > 0 for count in good["faces_per_frame"]) >= frames - 2
    assert set(good["boxes_found"]) == {"detected", "retried", "interpolated"}
    assert sum(good["boxes_found"].values()) == sum(good["faces_per_frame"])
    assert list(good["model_scores"]) == ["tiny.pt"] and good["model_scores"]["tiny.pt"] == good["score"]
    assert set(good["seconds"]) == {"decode", "detect", "classify"}
    assert len(good["face_scores"]) == sum(good["faces_per_frame"])  # each face's score, for frame-level metrics
    assert STRATEGIES["confident"](np.array(good["face_scores"])) == pytest.approx(good["score"], abs=1e-4)


def _details(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _predict_scores(test_dir, checkpoint, tmp_path, *extra) -> dict[str, float]:
    out = tmp_path / "submission.csv"
    args = ["--test-dir", str(test_dir), "--models", str(checkpoint), "--output", str(out), *extra]
    assert predict.main(args) == 0
    assert _rows(out.parent / "errors.csv") == [], "every video scored"
    return {row["filename"]: float(row["label"]) for row in _rows(out)}


@pytest.mark.slow
def test_numpy1_original_checkpoint_gives_the_original_scores(demo_world, tmp_path):
    torch.manual_seed(3)
    model = create_model("tf_efficientnet_b0_ns").eval()
    with torch.no_grad():  # a bias that spreads the scores over all three branches' range
        model.fc.bias.fill_(0.5)
    path = save_numpy1_checkpoint(
        tmp_path / "final_111_DeepFakeClassifier_tf_efficientnet_b0_ns_0_20", original_state_dict(model)
    )
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    videos = sorted(dfdc_metadata(demo_world))[:2]
    for video in videos:
        (test_dir / video.name).symlink_to(video)
    short = test_dir / "short.mp4"  # 20 frames: the 32 sampled indices repeat
    with VideoWriter(short, fps=24, width=480, height=270) as writer:
        for _, frame in zip(range(20), read_frames(videos[0]).values(), strict=False):
            writer.write(frame)
    # the original's scores as computed here: fp32 on the CPU (CUDA fp16 against fp32: tools/gpu_check.py)
    extra = ["--encoder", "tf_efficientnet_b0_ns", "--detector-scale", "0.5", "--device", "cpu"]
    scores = _predict_scores(test_dir, path, tmp_path, *extra)
    for video in videos:
        frames = original_read_frames(video)
        assert len(frames) == 32
        assert scores[video.name] == pytest.approx(original_video_score(frames, model), abs=1e-5)
    # The documented difference: the original reads only frame 0 of a 20-frame clip; we read the
    # 20 distinct sampled frames, and score them exactly as the original scores frames.
    assert len(original_read_frames(short)) == 1
    distinct = original_read_frames(short, distinct=True)
    assert len(distinct) == 20
    assert scores["short.mp4"] == pytest.approx(original_video_score(distinct, model), abs=1e-5)


def test_a_numpy1_b7_checkpoint_loads_strictly_through_predict(demo_world, tmp_path):
    model = create_model("tf_efficientnet_b7_ns")
    state = original_state_dict(model)
    expected_shapes = {
        "module.encoder.conv_stem.weight": (64, 3, 3, 3),
        "module.encoder.blocks.6.3.conv_pwl.weight": (640, 3840, 1, 1),
        "module.encoder.conv_head.weight": (2560, 640, 1, 1),
        "module.encoder.classifier.weight": (1000, 2560),  # built, never used, saved all the same
        "module.fc.weight": (1, 2560),
    }
    assert {key: tuple(state[key].shape) for key in expected_shapes} == expected_shapes
    del model
    path = save_numpy1_checkpoint(
        tmp_path / "final_888_DeepFakeClassifier_tf_efficientnet_b7_ns_0_40", state, legacy=True
    )
    del state
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    video = sorted(dfdc_metadata(demo_world))[0]
    (test_dir / video.name).symlink_to(video)
    # Small input and few frames keep a B7 quick on a CPU; the load itself is the full B7.
    scores = _predict_scores(
        test_dir,
        path,
        tmp_path,
        "--encoder",
        "tf_efficientnet_b7_ns",
        "--size",
        "64",
        "--frames",
        "2",
        "--runtime",
        "torch",
    )
    assert list(scores) == [video.name] and 0.0 < scores[video.name] < 1.0


@pytest.mark.shared_data
@pytest.mark.slow
def test_dfdc_mini_predict_and_score(small_checkpoint, tmp_path):
    root = shared_data("dfdc_mini")
    test_dir = tmp_path / "videos"
    test_dir.mkdir()
    for video in root.glob("*/*.mp4"):
        (test_dir / video.name).symlink_to(video)
    out = tmp_path / "submission.csv"
    # 8 frames a video: what is tested is a row for each and the scoring of them, not the sampling
    args = ["--test-dir", str(test_dir), "--models", str(small_checkpoint), "--frames", "8"]
    assert predict.main([*args, "--output", str(out)]) == 0
    assert sorted(row["filename"] for row in _rows(out)) == sorted(p.name for p in test_dir.iterdir())
    assert score.main(["--submission", str(out), "--labels", str(root), "--out-dir", str(tmp_path / "score")]) == 0
    result = score.evaluate(score.read_submission(out), score.read_labels(root))
    assert result["overall"]["videos"] == 5 and set(result["by_group"]) == {"dfdc_train_part_0", "dfdc_train_part_10"}
    for name in ("score.json", "roc.png", "confusion_matrix.png", "reliability.png"):
        assert (tmp_path / "score" / name).is_file()


def test_a_bad_checkpoint_stops_predict_with_one_line_naming_the_file(demo_world, tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    video = next(iter(sorted((demo_world / "test_videos").glob("*.mp4"))))
    (tmp_path / "videos" / video.name).symlink_to(video)
    bare = tmp_path / "bare.pt"
    torch.save(create_model("resnet18").state_dict(), bare)
    tampered = save_numpy1_checkpoint(tmp_path / "tampered.pt", {}, extra=RunsACommand())
    for path, words in ((bare, "pass --encoder"), (tampered, "refused to load: its pickle holds")):
        out = tmp_path / f"{path.stem}.csv"
        code = cli.run(
            predict.main, ["--test-dir", str(tmp_path / "videos"), "--models", str(path), "--output", str(out)]
        )
        [line] = capsys.readouterr().err.strip().splitlines()[-1:]
        assert code == 2 and line.startswith(f"error: {path}: ") and words in line, line
        assert not out.exists()


@pytest.mark.slow
def test_two_gloo_processes_write_the_rows_one_process_writes(demo_world, small_checkpoint, tmp_path):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for video in sorted(dfdc_metadata(demo_world))[:3]:
        (test_dir / video.name).symlink_to(video)
    (test_dir / "broken.mp4").write_text("not a video\n")
    args = ["--test-dir", str(test_dir), "--models", str(small_checkpoint), "--device", "cpu"]
    args += ["--frames", "8"]  # the same in both runs: their rows are compared, not the sampling
    assert predict.main([*args, "--output", str(tmp_path / "one" / "submission.csv")]) == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    result = subprocess.run(
        [*command, "-m", "inference.predict", *args, "--output", str(tmp_path / "two" / "submission.csv")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"2 videos in {test_dir}" in result.stderr, "rank 0 scored its half of the four videos"
    assert result.stderr.count("wrote ") == 1 and "(4 rows)" in result.stderr, "rank 0 alone wrote every row"
    one, two = _rows(tmp_path / "one" / "submission.csv"), _rows(tmp_path / "two" / "submission.csv")
    assert [row["filename"] for row in two] == [row["filename"] for row in one] == sorted(os.listdir(test_dir))
    for mine, theirs in zip(one, two, strict=True):
        assert float(theirs["label"]) == pytest.approx(float(mine["label"]), abs=2e-6)
    assert _rows(tmp_path / "two" / "errors.csv") == _rows(tmp_path / "one" / "errors.csv")
    assert [row["filename"] for row in _rows(tmp_path / "two" / "errors.csv")] == ["broken.mp4"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["details.jsonl", "errors.csv", "submission.csv"]
    one_details, two_details = (_details(tmp_path / run / "details.jsonl") for run in ("one", "two"))
    assert [d.get("frames_with_face") for d in two_details] == [d.get("frames_with_face") for d in one_details]


def test_two_members_with_one_file_name_are_both_scored(demo_world, small_checkpoint, tmp_path):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    video = sorted(dfdc_metadata(demo_world))[0]
    (test_dir / video.name).symlink_to(video)
    (tmp_path / "copy").mkdir()
    copy = tmp_path / "copy" / small_checkpoint.name
    copy.write_bytes(small_checkpoint.read_bytes())
    out = tmp_path / "submission.csv"
    models = ["--models", str(small_checkpoint), str(copy), "--runtime", "torch"]
    assert predict.main(["--test-dir", str(test_dir), *models, "--output", str(out)]) == 0
    [details] = _details(tmp_path / "details.jsonl")
    assert details["model_scores"] == {"0:tiny.pt": details["score"], "1:tiny.pt": details["score"]}
    assert float(_rows(out)[0]["label"]) == pytest.approx(details["score"], abs=1e-6)


def _clip(path, frames: list[np.ndarray]) -> None:
    height, width = frames[0].shape[:2]
    with VideoWriter(path, fps=25, width=width, height=height, crf=16) as writer:
        for frame in frames:
            writer.write(frame)


def test_the_recall_boost_finds_faces_in_dark_frames_and_faces_too_small_for_the_scale(small_checkpoint, tmp_path):
    photo = builtin_photos()["astronaut"]
    dark = (photo.astype(np.float32) * 0.08).astype(np.uint8)  # mean grey level about 9
    small = np.full((720, 1280, 3), 90, np.uint8)
    small[300:420, 600:720] = cv2.resize(photo, (120, 120), interpolation=cv2.INTER_AREA)  # a 40 px face
    detector = FaceDetector(INFERENCE_THRESHOLDS, 0.5, device="cpu")
    assert len(detector.detect(dark)) == len(detector.detect(small)) == 0, "MTCNN misses both at half size"
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    _clip(test_dir / "dark.mp4", [photo] * 2 + [dark] * 4)
    _clip(test_dir / "small.mp4", [small] * 4)
    args = ["--test-dir", str(test_dir), "--models", str(small_checkpoint), "--frames", "6", "--runtime", "torch"]
    args += ["--device", "cpu"]  # where the detector above missed both faces
    assert predict.main([*args, "--output", str(tmp_path / "boost" / "submission.csv")]) == 0
    boosted = {row["filename"]: row for row in _details(tmp_path / "boost" / "details.jsonl")}
    assert boosted["dark.mp4"]["faces_per_frame"] == [1] * 6
    assert boosted["dark.mp4"]["boxes_found"] == {"detected": 2, "retried": 4, "interpolated": 0}
    assert boosted["small.mp4"]["faces_per_frame"] == [1] * 4 and boosted["small.mp4"]["error"] is None
    assert predict.main([*args, "--no-recall-boost", "--output", str(tmp_path / "plain" / "submission.csv")]) == 0
    plain = {row["filename"]: row for row in _details(tmp_path / "plain" / "details.jsonl")}
    assert plain["dark.mp4"]["faces_per_frame"] == [1, 1, 0, 0, 0, 0], "the original's behaviour"
    assert plain["small.mp4"]["error"]["stage"] == "detect"
    assert predict.main([*args, "--fast", "--output", str(tmp_path / "fast" / "submission.csv")]) == 0
    fast = {row["filename"]: row for row in _details(tmp_path / "fast" / "details.jsonl")}
    assert fast["small.mp4"]["faces_per_frame"] == [1] * 4
    assert fast["dark.mp4"]["faces_per_frame"] == [1] * 6
    # six sampled frames, fewer than faces.MIN_SEEDED_FRAMES: every frame gets the full pyramid, as in
    # the default mode, and the dark ones are retried
    assert fast["dark.mp4"]["boxes_found"] == {"detected": 2, "retried": 4, "interpolated": 0}

    large = np.full((1124, 2000, 3), 90, np.uint8)  # over 1900 px: the resolution rule detects at 0.33x
    large[500:680, 900:1080] = cv2.resize(photo, (180, 180), interpolation=cv2.INTER_AREA)  # a 60 px face
    rule = FaceDetector(INFERENCE_THRESHOLDS, "rule", device="cpu")
    assert rule.frame_scale(2000, 1124) == 0.33 and len(rule.detect(large)) == 0, "too small at 0.33x"
    (tmp_path / "large").mkdir()
    _clip(tmp_path / "large" / "large.mp4", [large] * 3)
    rule_args = [*args[2:], "--test-dir", str(tmp_path / "large"), "--detector-scale", "rule"]
    assert predict.main([*rule_args, "--output", str(tmp_path / "rule" / "submission.csv")]) == 0
    [found] = _details(tmp_path / "rule" / "details.jsonl")
    assert found["faces_per_frame"] == [1] * 3 and found["boxes_found"]["retried"] == 3


def test_a_person_seen_before_and_after_a_faceless_gap_gets_interpolated_boxes(small_checkpoint, tmp_path):
    photo = builtin_photos()["astronaut"]
    grey = np.full_like(photo, 128)
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    _clip(test_dir / "gap.mp4", [photo, photo, grey, grey, photo, photo])
    args = ["--test-dir", str(test_dir), "--models", str(small_checkpoint), "--frames", "6", "--runtime", "torch"]
    assert predict.main([*args, "--output", str(tmp_path / "boost" / "submission.csv")]) == 0
    [boosted] = _details(tmp_path / "boost" / "details.jsonl")
    assert boosted["faces_per_frame"] == [1] * 6
    assert boosted["boxes_found"] == {"detected": 4, "retried": 0, "interpolated": 2}
    assert predict.main([*args, "--no-recall-boost", "--output", str(tmp_path / "plain" / "submission.csv")]) == 0
    [plain] = _details(tmp_path / "plain" / "details.jsonl")
    assert plain["faces_per_frame"] == [1, 1, 0, 0, 1, 1]


def test_interpolation_is_linear_in_the_frame_index_and_only_across_short_gaps():
    box_a, box_b, far = [10, 10, 50, 50], [30, 10, 70, 50], [300, 300, 340, 340]  # a and b: IoU 1/3
    found = interpolated_boxes([0, 10, 20, 40], [[box_a], [], [], [box_b]])
    assert found == {1: [[15.0, 10.0, 55.0, 50.0]], 2: [[20.0, 10.0, 60.0, 50.0]]}
    assert interpolated_boxes([0, 10, 20], [[box_a], [], [far]]) == {1: []}, "different people: no box"
    assert interpolated_boxes(list(range(6)), [[box_a], [], [], [], [], [box_a]]) == {}, "gap longer than 3 frames"


def test_faces_of_several_videos_are_classified_together_with_the_same_scores(
    demo_world, small_checkpoint, tmp_path, monkeypatch
):
    test_dir = tmp_path / "test"
    test_dir.mkdir()
    for video in sorted(dfdc_metadata(demo_world))[:3]:
        (test_dir / video.name).symlink_to(video)
    args = ["--test-dir", str(test_dir), "--models", str(small_checkpoint), "--runtime", "torch"]
    batches = []
    from inference.detectors import recipes  # the winner's recipe scores the faces

    original = recipes.face_probabilities
    monkeypatch.setattr(
        recipes, "face_probabilities", lambda m, crops, *a: batches.append(len(crops)) or original(m, crops, *a)
    )
    assert predict.main([*args, "--batch-size", "1000", "--output", str(tmp_path / "together" / "submission.csv")]) == 0
    together = _details(tmp_path / "together" / "details.jsonl")
    assert batches == [sum(sum(d["faces_per_frame"]) for d in together)], "one pass over the faces of all three"
    assert predict.main([*args, "--batch-size", "4", "--output", str(tmp_path / "apart" / "submission.csv")]) == 0
    apart = _details(tmp_path / "apart" / "details.jsonl")
    assert len(batches) == 4, "then a group as soon as it held 4 faces: each video alone"
    assert [d["score"] for d in together] == pytest.approx([d["score"] for d in apart], abs=score_tolerance(1e-6))
    assert all(d["seconds"]["classify"] > 0 for d in together)

    def broken(*args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(recipes, "face_probabilities", broken)
    broken_run = [*args, "--batch-size", "1000", "--output", str(tmp_path / "broken" / "submission.csv")]
    assert predict.main(broken_run) == 1, "every video failed: the rows are written, and the status says so"
    rows = _rows(tmp_path / "broken" / "errors.csv")
    assert [row["stage"] for row in rows] == ["classify"] * 3 and "out of memory" in rows[0]["reason"]
    assert {row["label"] for row in _rows(tmp_path / "broken" / "submission.csv")} == {"0.500000"}
