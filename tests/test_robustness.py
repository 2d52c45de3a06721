"""Robustness: --perturb on the sampled frames before detection, and evaluate's robustness report."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import inference.pipeline.faces
from common.cli import InputError
from inference.distortions.frame_perturbation import FramePerturbation
from inference.distortions.perturbations import perturb_clip, perturbation_seed
from inference.evaluation.protocols import main
from inference.evaluation.robustness import (
    DEFAULT_DISTORTIONS,
    DISTORTION_NAMES,
    clean_threshold,
    markdown,
    plot_robustness,
    read_perturbations,
    robustness_json,
    robustness_rows,
    set_metrics,
)
from inference.pipeline.faces import extract_faces, sample_frames
from inference.pipeline.reader import FaceReader
from inference.prediction.predict_options import parse_args
from inference.scoring.metrics import competition_log_loss
from inference.scoring.submission_scoring import read_labels, read_submission
from tests.conftest import save_tiny_checkpoint

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

# ---- (a) pure functions ----


def test_perturbations_block_defaults_and_checks():
    assert read_perturbations(None) == {"distortions": list(DEFAULT_DISTORTIONS), "levels": [1, 2, 3, 4, 5], "seed": 0}
    assert read_perturbations({"distortions": ["gb", "Mixed"], "levels": [5, 1, 5], "seed": 7}) == {
        "distortions": ["GB", "mixed"],
        "levels": [1, 5],
        "seed": 7,
    }
    with pytest.raises(ValueError, match="unknown distortion 'blur': known are CS, CC, BW, GNC, GB, JPEG, resize, VC"):
        read_perturbations({"distortions": ["blur"]})
    with pytest.raises(ValueError, match="from 1 to 5, got 6"):
        read_perturbations({"levels": [6]})
    with pytest.raises(ValueError, match="unknown keys level"):
        read_perturbations({"level": [1]})
    with pytest.raises(ValueError, match="names a distortion twice"):
        read_perturbations({"distortions": ["GB", "gb"]})


def test_rows_carry_each_metric_and_its_change_from_clean_signed_worse_positive():
    fixed = {"clean_threshold": 0.6, "reals": 20}
    clean = {"video_auc": 0.9, "log_loss": 0.3, "tpr_at_5pct_fpr": 0.8, **fixed}
    clean |= {"tpr_at_clean_threshold": 0.8, "fpr_at_clean_threshold": 0.05}
    perturbed = {
        ("GB", 1): {"video_auc": 0.85, "log_loss": 0.35, "tpr_at_5pct_fpr": 0.7, **fixed}
        | {"tpr_at_clean_threshold": 0.9, "fpr_at_clean_threshold": 0.25},
        ("JPEG", 5): {"video_auc": 0.95, "log_loss": 0.9, "tpr_at_5pct_fpr": None, **fixed}
        | {"tpr_at_clean_threshold": None, "fpr_at_clean_threshold": 0.1},
    }
    rows = robustness_rows("m", "s", clean, perturbed)
    assert [(r["distortion"], r["level"]) for r in rows] == [("clean", 0), ("GB", 1), ("JPEG", 5)]
    assert rows[0]["video_auc_drop"] == 0 and rows[0]["log_loss_rise"] == 0 and rows[0]["tpr_at_5pct_fpr_drop"] == 0
    gb, jpeg = rows[1], rows[2]
    assert gb["video_auc_drop"] == pytest.approx(0.05) and gb["log_loss_rise"] == pytest.approx(0.05)
    assert gb["tpr_at_5pct_fpr_drop"] == pytest.approx(0.1) and gb["reals"] == 20
    assert jpeg["video_auc_drop"] == pytest.approx(-0.05)  # better than clean: a negative drop
    assert jpeg["log_loss_rise"] == pytest.approx(0.6) and jpeg["tpr_at_5pct_fpr_drop"] is None
    nested = robustness_json(rows, {"s": {"distortions": ["GB", "JPEG"], "levels": [1, 5], "seed": 0}})
    assert nested["m"]["s"]["clean"]["video_auc"] == 0.9
    assert nested["m"]["s"]["perturbed"]["JPEG"]["5"]["log_loss_rise"] == pytest.approx(0.6)
    assert nested["m"]["s"]["perturbed"]["GB"]["1"]["fpr_at_clean_threshold"] == 0.25
    assert nested["m"]["s"]["clean"]["clean_threshold"] == 0.6
    table = markdown(rows).splitlines()
    assert table[0].endswith("| TPR@5%FPR | TPR drop | TPR@clean 5% thr | FPR@clean 5% thr | reals |")
    assert table[3] == (
        "| m | s | GB | 1 | 0.8500 | +0.0500 | 0.3500 | +0.0500 | 0.7000 | +0.1000 | 0.9000 | 0.2500 | 20 |"
    )
    assert table[4].endswith("| 0.9000 | +0.6000 | - | - | - | 0.1000 | 20 |")
    assert len(table[1].split("|")) == len(table[0].split("|"))


def test_the_table_and_the_plot_name_what_each_code_is(tmp_path, monkeypatch):
    """A reader saw the codes alone (CS, CC, BW, GNC, GB, VC) in the table and the plot's legend."""
    import matplotlib.pyplot as plt

    assert DISTORTION_NAMES["CS"] == "colour saturation change" and DISTORTION_NAMES["GB"] == "Gaussian blur"
    assert DISTORTION_NAMES["GNC"] == "white Gaussian noise in colour components"
    assert DISTORTION_NAMES["VC"] == "video compression rate change (H.264)"
    assert set(DISTORTION_NAMES) == set(DEFAULT_DISTORTIONS), "every distortion has its name"
    metrics = {"video_auc": 0.9, "log_loss": 0.3, "tpr_at_5pct_fpr": None, "clean_threshold": None, "reals": 3}
    metrics |= {"tpr_at_clean_threshold": None, "fpr_at_clean_threshold": None}
    codes = ["CS", "CC", "BW", "GNC", "GB", "VC"]
    rows = robustness_rows("m", "s", metrics, {(code, 1): metrics for code in codes})
    assert "Distortions: CS colour saturation change; CC colour contrast change; BW local block-wise distortion; " in (
        markdown(rows)
    )
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_robustness("s", rows, tmp_path)
    [legend] = [axis.get_legend() for axis in figures[0].axes if axis.get_legend() is not None]
    assert [text.get_text() for text in legend.get_texts()] == [f"{c}: {DISTORTION_NAMES[c]}" for c in codes]
    plt.close(figures[0].number)


def test_set_metrics_are_those_of_the_submission():
    labels = {f"r{i}.mp4": (0, "real") for i in range(19)} | {"f0.mp4": (1, "x"), "f1.mp4": (1, "x")}
    predictions = {name: 0.01 * index for index, name in enumerate(sorted(labels))}
    metrics = set_metrics(predictions, labels)
    names = sorted(labels)
    y = np.array([labels[n][0] for n in names])
    p = np.array([predictions[n] for n in names])
    assert metrics["log_loss"] == pytest.approx(competition_log_loss(y, p))
    top_real = max(predictions[n] for n in names if labels[n][0] == 0)  # 19 reals: k = floor(0.05 * 20) = 1
    assert metrics["tpr_at_5pct_fpr"] == pytest.approx(np.mean(p[y == 1] > top_real)) and metrics["reals"] == 19
    assert clean_threshold(predictions, labels) == top_real
    assert metrics["tpr_at_clean_threshold"] is None and metrics["clean_threshold"] is None  # none given
    at = set_metrics(predictions, labels, threshold=0.135)
    assert at["tpr_at_clean_threshold"] == np.mean(p[y == 1] > 0.135)
    assert at["fpr_at_clean_threshold"] == np.mean(p[y == 0] > 0.135) and at["clean_threshold"] == 0.135
    fewer = {name: value for name, value in labels.items() if name != "r0.mp4"}
    assert clean_threshold({n: predictions[n] for n in fewer}, fewer) is None  # 18 reals: under the 19 needed


def test_false_alarms_a_distortion_adds_show_at_the_clean_threshold_not_at_the_rows_own():
    reals = {f"r{i:02}.mp4": 0.01 * i for i in range(20)}  # clean: 0.00 .. 0.19
    fakes = {f"f{i}.mp4": 0.9 for i in range(5)}
    labels = {name: (0, "real") for name in reals} | {name: (1, "x") for name in fakes}
    clean_predictions = reals | fakes
    # the distortion lifts every real by 0.5, still under every fake
    perturbed_predictions = {name: value + 0.5 for name, value in reals.items()} | fakes
    threshold = clean_threshold(clean_predictions, labels)
    assert threshold == pytest.approx(0.19)  # 20 reals: k = floor(0.05 * 21) = 1, the largest
    clean = set_metrics(clean_predictions, labels, threshold)
    perturbed = set_metrics(perturbed_predictions, labels, threshold)
    [clean_row, row] = robustness_rows("m", "s", clean, {("CS", 3): perturbed})
    assert clean_row["fpr_at_clean_threshold"] == 0.0 and clean_row["tpr_at_clean_threshold"] == 1.0
    assert row["tpr_at_5pct_fpr"] == 1.0 and row["tpr_at_5pct_fpr_drop"] == 0.0  # the own threshold hides it
    assert row["fpr_at_clean_threshold"] == 1.0 and row["tpr_at_clean_threshold"] == 1.0  # every real now alarms
    assert row["clean_threshold"] == pytest.approx(0.19)


# ---- (b) the hook: sampled frames distorted before detection ----


@pytest.fixture
def captured(monkeypatch):
    """The frames detection receives, per call (crop_faces replaced by a recorder)."""
    calls = []

    def record(path, decoded, *args, **kwargs):
        calls.append({index: frame.copy() for index, frame in decoded.items()})
        return inference.pipeline.faces.VideoFaces(Path(path), sorted(decoded))

    monkeypatch.setattr(inference.pipeline.faces, "crop_faces", record)
    return calls


def test_perturb_gives_the_distortion_of_the_clean_sampled_frames_seeded_by_filename(demo_world, captured):
    video = sorted((demo_world / "test_videos").glob("*.mp4"))[0]
    clean = sample_frames(video, 6)
    faces = extract_faces(video, None, 6, perturbation=FramePerturbation("GB", 5, 3), video_id="sub/v.mp4")
    expected, steps = perturb_clip(
        [clean.decoded[i] for i in sorted(clean.decoded)], "GB", 5, seed=perturbation_seed(3, "sub/v.mp4", "GB", 5)
    )
    assert sorted(captured[0]) == sorted(clean.decoded) and steps == [("GB", 5)]
    for index, frame in zip(sorted(clean.decoded), expected, strict=True):
        np.testing.assert_array_equal(captured[0][index], frame)
    assert faces.details()["perturbation"] == {"name": "GB", "level": 5, "seed": 3, "steps": [["GB", 5]]}
    extract_faces(video, None, 6, perturbation=FramePerturbation("JPEG", 1))
    changed = [np.mean(np.abs(captured[1][i].astype(int) - clean.decoded[i])) for i in sorted(clean.decoded)]
    assert all(difference > 0.1 for difference in changed)  # a real JPEG at quality 25 moves every frame
    extract_faces(video, None, 6)
    assert all(np.array_equal(captured[2][i], clean.decoded[i]) for i in clean.decoded)
    assert "perturbation" not in inference.pipeline.faces.VideoFaces(video, [0]).details()


def test_mixed_keeps_each_videos_chain_at_every_level_only_the_level_changes():
    rng = np.random.default_rng(0)
    decoded = {index: rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for index in (0, 5)}
    chains = {}
    for video in [f"sub/v{i}.mp4" for i in range(6)]:
        for level in (1, 3, 5):
            frames, applied = FramePerturbation("mixed", level, 3).apply(decoded, video, 25.0)
            assert {step_level for _, step_level in applied["steps"]} == {level}
            chains.setdefault(video, set()).add(tuple(name for name, _ in applied["steps"]))
            expected, _ = perturb_clip(
                [decoded[0], decoded[5]],
                "mixed",
                level,
                seed=perturbation_seed(3, video, "mixed", level),  # noise and blocks: per level
                fps=25.0,
                chain_seed=perturbation_seed(3, video),
            )
            np.testing.assert_array_equal(frames[5], expected[1])
    assert all(len(names) == 1 for names in chains.values())  # one chain per video at levels 1, 3, 5
    assert len({names for [names] in map(list, chains.values())}) > 1  # but not one chain for all videos


def reader_frames(test_dir: Path, filename: str, perturb: str, monkeypatch, captured) -> dict:
    args = parse_args(["--test-dir", str(test_dir), "--models", "m.pt", "--frames", "6", "--perturb", perturb])
    monkeypatch.setattr(FaceReader, "_detector", lambda self: None)
    reader = FaceReader(args, torch.device("cpu"), 0)
    try:
        [(_, future)] = list(reader.read_all([test_dir / filename]))
        future.result()
    finally:
        reader.close()
    return captured[-1]


def test_the_seed_is_the_filename_under_the_test_dir_not_its_folder(demo_world, tmp_path, monkeypatch, captured):
    video = sorted((demo_world / "test_videos").glob("*.mp4"))[0]
    for folder, name in [("a", "sub/v.mp4"), ("b", "sub/v.mp4"), ("a", "sub/w.mp4")]:
        (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / name).symlink_to(video)
    in_a = reader_frames(tmp_path / "a", "sub/v.mp4", "bw:3", monkeypatch, captured)
    in_b = reader_frames(tmp_path / "b", "sub/v.mp4", "BW:3", monkeypatch, captured)
    other_name = reader_frames(tmp_path / "a", "sub/w.mp4", "BW:3", monkeypatch, captured)
    clean = sample_frames(video, 6).decoded
    expected, _ = perturb_clip([clean[i] for i in sorted(clean)], "BW", 3, perturbation_seed(0, "sub/v.mp4", "BW", 3))
    for index, frame in zip(sorted(clean), expected, strict=True):
        np.testing.assert_array_equal(in_a[index], frame)
        np.testing.assert_array_equal(in_b[index], frame)
    assert any(not np.array_equal(other_name[i], in_a[i]) for i in clean)  # blocks elsewhere


def test_perturb_options_are_checked(capsys):
    names = "CS, CC, BW, GNC, GB, JPEG, resize, VC, mixed"
    for wrong, message in [
        ("blur:1", f"unknown distortion 'blur': known are {names}"),
        ("GB:0", "distortion level must be a whole number from 1 to 5, got 0"),
    ]:
        with pytest.raises(SystemExit):
            parse_args(["--test-dir", ".", "--models", "m.pt", "--perturb", wrong])
        assert f"argument --perturb: {message}" in capsys.readouterr().err
    args = parse_args(["--test-dir", ".", "--models", "m.pt", "--perturb", "Resize:2", "--perturb-seed", "9"])
    assert (args.perturb, args.perturb_seed) == ("resize:2", 9)
    clip_args = argparse.Namespace(**{**vars(args), "perturb": "GB:1"})
    with pytest.raises(InputError, match="temporal model"):
        FaceReader(clip_args, torch.device("cpu"), 0, {(8, 4)})


# ---- (c) evaluate end to end: 2 distortions x 2 levels on the demo's test videos ----


@pytest.fixture(scope="module")
def robustness_run(demo_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robustness")
    save_tiny_checkpoint(tmp / "tiny.pt", seed=1)
    (tmp / "ensemble.yaml").write_text(yaml.safe_dump({"members": [{"checkpoint": "tiny.pt"}]}))
    protocol = {
        "models": [{"name": "ens", "ensemble": str(tmp / "ensemble.yaml")}],
        "test_sets": [
            {
                "name": "demo_test",
                "root": str(demo_world / "test_videos"),
                "labels": "labels.csv",
                "perturbations": {"distortions": ["GB", "JPEG"], "levels": [1, 5]},
            }
        ],
        # the report is what is tested: 2 frames a video, PyTorch's runtime (no OpenVINO export)
        "predict": {"frames": 2, "detector_scale": "rule", "runtime": "torch"},
    }
    path = tmp / "protocol.yaml"
    path.write_text(yaml.safe_dump(protocol))
    out = tmp / "out"
    assert main(["--protocol", str(path), "--out", str(out)]) == 0
    return path, out, read_labels(demo_world / "test_videos" / "labels.csv")


def test_the_report_has_a_row_per_distortion_and_level_from_its_predictions(robustness_run):
    _, out, labels = robustness_run
    with open(out / "robustness.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    pairs = [(r["distortion"], r["level"]) for r in rows]
    assert pairs == [("clean", "0"), ("GB", "1"), ("GB", "5"), ("JPEG", "1"), ("JPEG", "5")]
    predictions = out / "predictions" / "ens" / "demo_test"
    names = sorted(labels)
    y = np.array([labels[n][0] for n in names])
    clean = read_submission(predictions / "submission.csv")
    clean_loss = competition_log_loss(y, np.array([clean[n] for n in names]))
    for row in rows[1:]:
        folder = predictions / "perturbed" / f"{row['distortion']}_{row['level']}"
        submission = read_submission(folder / "submission.csv")
        loss = competition_log_loss(y, np.array([submission[n] for n in names]))
        assert float(row["log_loss"]) == pytest.approx(loss)
        assert float(row["log_loss_rise"]) == pytest.approx(loss - clean_loss)
        assert row["video_auc"] != "" and row["tpr_at_5pct_fpr"] == "" and row["reals"] == "1"  # 1 real: '-'
        assert row["fpr_at_clean_threshold"] == row["tpr_at_clean_threshold"] == row["clean_threshold"] == ""
        made_from = json.loads((folder / "source.json").read_text())
        assert made_from["predict"]["perturb"] == f"{row['distortion']}:{row['level']}"
        assert made_from["predict"]["perturb_seed"] == 0 and "ensemble" in made_from
        details = [json.loads(line) for line in (folder / "details.jsonl").read_text().splitlines()]
        assert all(d["perturbation"]["name"] == row["distortion"] for d in details)
    assert read_submission(predictions / "perturbed" / "GB_5" / "submission.csv") != clean
    assert (out / "robustness_demo_test.png").stat().st_size > 0
    assert "| ens | demo_test | GB | 5 |" in (out / "robustness.md").read_text()
    nested = json.loads((out / "robustness.json").read_text())["ens"]["demo_test"]
    assert set(nested["perturbed"]) == {"GB", "JPEG"} and nested["perturbations"]["seed"] == 0


def test_a_second_run_predicts_nothing_again(robustness_run, monkeypatch):
    path, out, _ = robustness_run
    before = (out / "robustness.csv").read_text()
    import inference.prediction.predict_folder

    def refuse(*args, **kwargs):
        raise AssertionError("nothing should be predicted again")

    monkeypatch.setattr(inference.prediction.predict_folder, "main", refuse)
    assert main(["--protocol", str(path), "--out", str(out)]) == 0
    assert (out / "robustness.csv").read_text() == before
