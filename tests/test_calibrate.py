"""python -m inference.calibrate: labelled raw scores from out-of-fold predictions or a predicted
set, the fit, the operating points, and the ensemble file it writes (read back as predict reads it)."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest
import yaml
from scipy.special import expit, logit

from common.cli import InputError
from inference.calibration.methods import apply_calibration, fit_calibration
from inference.fitting import calibrate_ensemble as calibrate
from inference.fitting.calibrate_output import HEADER
from inference.fitting.calibration_sources import OOF_WARNING, submission_scores
from inference.models.ensemble_calibration import CalibrationFileError
from inference.models.ensemble_file import ensemble_calibration, ensemble_detector_scale, read_ensemble_file
from inference.models.named_weights import named_ensemble
from inference.scoring.metrics import brier_score, competition_log_loss
from inference.scoring.operating_points import threshold_at_fpr


def _scores(seed: int, labels: np.ndarray) -> np.ndarray:
    """Over-confident scores that still make mistakes (so that a temperature has something to fix):
    logits N(+-3, 3.5^2), whose calibrating temperature is 3.5^2 / (2 x 3) = 2.04 (before the clip)."""
    rng = np.random.default_rng(seed)
    return np.clip(expit(3 * (2 * labels - 1) + rng.normal(0, 3.5, len(labels))), 0.001, 0.999)


def _run(root, name: str, videos: list[str], labels, probabilities, encoder="resnet18", size=64):
    """A training run folder root/logs/NAME (oof_predictions.csv, config.yaml) and its best
    checkpoint root/NAME_best.pt, which is no checkpoint at all: calibrate never loads one."""
    folder = root / "logs" / name
    folder.mkdir(parents=True)
    rows = "".join(f"{v},{y},{float(p)!r}\n" for v, y, p in zip(videos, labels, probabilities, strict=True))
    (folder / "oof_predictions.csv").write_text("video,label,probability\n" + rows)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"encoder": encoder, "input_size": size}}))
    (root / f"{name}_best.pt").write_bytes(b"not a checkpoint")
    return folder


def _ensemble(path, members: list[tuple[str, float]], extra: dict | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {**(extra or {}), "members": [{"checkpoint": c, "weight": w} for c, w in members]}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def two_folds(tmp_path):
    """Runs a and c validated on fold 0's 30 videos, run b on fold 1's 30; 30 reals in all."""
    weights = tmp_path / "weights"
    fold0, fold1 = [f"f0_{i:02d}.mp4" for i in range(30)], [f"f1_{i:02d}.mp4" for i in range(30)]
    labels = np.array([0, 1] * 15)
    scores = {"a": _scores(1, labels), "c": _scores(2, labels), "b": _scores(3, labels)}
    runs = {
        "a": _run(weights, "a", fold0, labels, scores["a"]),
        "c": _run(weights, "c", fold0, labels, scores["c"]),
        "b": _run(weights, "b", fold1, labels, scores["b"]),
    }
    ensemble = _ensemble(
        tmp_path / "configs" / "ensemble.yaml",
        [("../weights/a_best.pt", 1.0), ("../weights/c_best.pt", 3.0), ("../weights/b_best.pt", 2.0)],
        extra={"note": "kept"},
    )
    # by hand: fold 0's videos are scored by a and c (weights 1 and 3), fold 1's by b alone
    by_hand = np.concatenate([(1.0 * scores["a"] + 3.0 * scores["c"]) / 4.0, scores["b"]])
    return {"ensemble": ensemble, "runs": runs, "labels": np.concatenate([labels, labels]), "scores": by_hand}


def _block(path) -> dict:
    return yaml.safe_load(path.read_text())["calibration"]


def test_oof_of_two_folds_fits_the_weighted_mean_of_the_runs_that_validated_each_video(two_folds, capsys, caplog):
    ensemble, labels, scores = two_folds["ensemble"], two_folds["labels"], two_folds["scores"]
    with caplog.at_level(logging.INFO, logger="inference.calibrate"):
        assert calibrate.main(["--ensemble", str(ensemble), "--oof"]) == 0
    assert "60 videos" in caplog.text and "scored 30 by 1 run, 30 by 2 runs" in caplog.text
    block = _block(ensemble)
    expected = fit_calibration(labels, scores)["temperature"]
    assert block["method"] == "temperature" and block["temperature"] == pytest.approx(expected, rel=1e-6)
    assert block["temperature"] > 1  # the scores are over-confident
    # to the last bit but one: the weights are divided by their sum first, as predict divides them
    assert block["real_scores"] == pytest.approx(sorted(float(s) for s in scores[labels == 0]), rel=1e-12, abs=0)
    fitted_on = block["fitted_on"]
    assert (fitted_on["videos"], fitted_on["real"], fitted_on["fake"]) == (60, 30, 30)
    after = apply_calibration(scores, block)
    assert fitted_on["log_loss_before"] == pytest.approx(competition_log_loss(labels, scores), abs=1e-6)
    assert fitted_on["log_loss_after"] == pytest.approx(competition_log_loss(labels, after), abs=1e-6)
    assert fitted_on["brier_after"] == pytest.approx(brier_score(labels, after), abs=1e-6)
    assert fitted_on["log_loss_after"] < fitted_on["log_loss_before"]
    assert fitted_on["source"].startswith("oof: ") and fitted_on["source"].count("logs") == 3
    document = yaml.safe_load(ensemble.read_text())
    assert document["note"] == "kept" and ensemble.read_text().startswith(HEADER)
    out = capsys.readouterr().out
    assert "videos 60, reals 30, fakes 30" in out and f"{block['temperature']:.4f}" in out


def test_the_written_file_loads_back_and_applies_what_it_stores(two_folds, caplog):
    ensemble, labels, scores = two_folds["ensemble"], two_folds["labels"], two_folds["scores"]
    with caplog.at_level(logging.WARNING):
        assert calibrate.main(["--ensemble", str(ensemble), "--oof", "--fpr", "0.05", "fpr=0.01"]) == 0
    assert "it needs 99 real videos, there are 30" in caplog.text
    calibration = ensemble_calibration(ensemble)  # no members mismatch
    temperature = _block(ensemble)["temperature"]
    x = np.array([0.01, 0.3, 0.5, 0.9, 0.999])
    assert calibration.probability(x) == pytest.approx(expit(logit(x) / temperature), abs=1e-12)
    reals = scores[labels == 0]
    [point] = calibration.operating_points  # 1% is not stored: 30 reals cannot support it
    assert point.fpr == 0.05 and point.score == threshold_at_fpr(reals, 0.05) == reals.max()
    assert (point.reals, point.rank) == (30, 1)
    assert point.probability == pytest.approx(expit(logit(point.score) / temperature), abs=1e-12)
    assert calibration.default_operating_point() == point
    assert calibration.real_quantile(float(np.median(reals))) == pytest.approx(0.5, abs=1 / 30)
    assert [entry["weight"] for entry in _block(ensemble)["members"]] == [1.0, 3.0, 2.0]


def test_run_folders_given_map_to_the_members_in_order(two_folds):
    ensemble, runs = two_folds["ensemble"], two_folds["runs"]
    in_order = [str(runs[name]) for name in ("a", "c", "b")]
    assert calibrate.main(["--ensemble", str(ensemble), "--oof", *in_order, "--method", "platt"]) == 0
    block = _block(ensemble)
    assert block["method"] == "platt"
    expected = fit_calibration(two_folds["labels"], two_folds["scores"], "platt")
    assert (block["a"], block["b"]) == pytest.approx((expected["a"], expected["b"]), rel=1e-5)
    assert ensemble_calibration(ensemble).method_parameters()["method"] == "platt"
    swapped = [str(runs[name]) for name in ("c", "a", "b")]
    with pytest.raises(InputError, match=r"run .*c trained .*c_best\.pt, but the member in its place is .*a_best\.pt"):
        calibrate.main(["--ensemble", str(ensemble), "--oof", *swapped])
    with pytest.raises(InputError, match="2 run folders for 3 members"):
        calibrate.main(["--ensemble", str(ensemble), "--oof", *in_order[:2]])


def test_a_member_without_out_of_fold_predictions_is_named(two_folds):
    (two_folds["runs"]["c"] / "oof_predictions.csv").unlink()
    with pytest.raises(InputError, match=r"member c_best\.pt: .*logs/c/oof_predictions\.csv: missing"):
        calibrate.main(["--ensemble", str(two_folds["ensemble"]), "--oof"])


def test_runs_make_a_new_equal_weight_ensemble_file(tmp_path):
    weights = tmp_path / "weights"
    videos, labels = [f"v{i}" for i in range(60)], np.array([0, 1] * 30)  # 30 of each: the default minimum
    first, second = _scores(8, labels), _scores(9, labels)
    runs = [_run(weights, "x", videos, labels, first), _run(weights, "y", videos, labels, second, "resnet34", 96)]
    out = tmp_path / "configs" / "calibrated.yaml"
    with pytest.raises(SystemExit):
        calibrate.main(["--runs", *map(str, runs)])  # --out is required
    assert calibrate.main(["--runs", *map(str, runs), "--out", str(out)]) == 0
    members = read_ensemble_file(out)
    assert [m["path"].resolve() for m in members] == [(weights / f"{n}_best.pt").resolve() for n in "xy"]
    assert [(m["encoder"], m["input_size"], m["weight"]) for m in members] == [
        ("resnet18", 64, 0.5),
        ("resnet34", 96, 0.5),
    ]
    expected = fit_calibration(labels, (first + second) / 2)["temperature"]
    assert ensemble_calibration(out).method["temperature"] == pytest.approx(expected, rel=1e-6)


def test_one_class_is_refused(tmp_path):
    weights = tmp_path / "weights"
    run = _run(weights, "z", ["a", "b", "c"], [1, 1, 1], [0.6, 0.7, 0.8])
    with pytest.raises(InputError, match="needs real and fake videos; got 0 real, 3 fake"):
        calibrate.main(["--runs", str(run), "--out", str(tmp_path / "e.yaml")])


def _predicted(folder, rows: list[dict], labels: dict[str, int]):
    """A predicted set: submission.csv (the submitted scores), details.jsonl, labels.csv."""
    folder.mkdir(parents=True)
    (folder / "submission.csv").write_text(
        "filename,label\n" + "".join(f"{row['filename']},{row['score']:.6f}\n" for row in rows)
    )
    (folder / "details.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "labels.csv").write_text("filename,label\n" + "".join(f"{n},{y}\n" for n, y in labels.items()))
    return folder / "submission.csv", folder / "labels.csv"


def test_submission_scores_prefer_the_raw_score_and_leave_failed_videos_out(tmp_path):
    rows = [
        {"filename": "a.mp4", "score": 0.31, "ensemble_score": 0.2, "calibrated": True, "error": None},
        {"filename": "b.mp4", "score": 0.7, "error": None},  # written before predict calibrated
        {"filename": "c.mp4", "score": 0.5, "error": {"filename": "c.mp4", "stage": "decode", "reason": "x"}},
    ]
    submission, labels = _predicted(tmp_path / "set", rows, {"a.mp4": 0, "b.mp4": 1, "c.mp4": 1})
    data = submission_scores(submission, labels)
    assert data.videos == ["a.mp4", "b.mp4"] and data.scores.tolist() == [0.2, 0.7] and data.labels.tolist() == [0, 1]
    assert data.source == f"submission: {submission}"
    rows[0].pop("ensemble_score")  # a calibrated score alone cannot be fitted on
    submission, labels = _predicted(tmp_path / "calibrated", rows, {"a.mp4": 0, "b.mp4": 1, "c.mp4": 1})
    with pytest.raises(InputError, match="a.mp4: a calibrated score without its `ensemble_score`"):
        submission_scores(submission, labels)
    with pytest.raises(InputError, match="1 missing: d.mp4"):  # labels as inference.score holds them
        submission_scores(*_predicted(tmp_path / "short", rows[1:], {"b.mp4": 1, "c.mp4": 1, "d.mp4": 0}))


def test_submission_scored_by_other_models_is_refused(tmp_path):
    rows = [{"filename": "a.mp4", "score": 0.4, "model_scores": {"other.pt": 0.4}, "error": None}]
    submission, labels = _predicted(tmp_path / "set", rows, {"a.mp4": 0})
    entries = [{"path": tmp_path / "m_best.pt", "weight": 1.0}]
    with pytest.raises(InputError, match="scored by other.pt, not by the ensemble's members m_best.pt"):
        submission_scores(submission, labels, entries)
    rows[0]["model_scores"] = {"m_best.pt": 0.4, "n_best.pt": 0.8}  # 0.6 with equal weights, not 0.4
    submission, labels = _predicted(tmp_path / "weighted", rows, {"a.mp4": 0})
    two = entries + [{"path": tmp_path / "n_best.pt", "weight": 1.0}]
    with pytest.raises(InputError, match="not the weighted mean of its models' scores"):
        submission_scores(submission, labels, two)
    assert submission_scores(submission, labels, [two[0], {**two[1], "weight": 0.0}]).scores.tolist() == [0.4]


def test_a_submission_without_details_is_read_with_a_warning_and_its_errors_left_out(tmp_path, caplog):
    rows = [{"filename": f"v{i}.mp4", "score": s} for i, s in enumerate((0.1, 0.8, 0.5))]
    submission, labels = _predicted(tmp_path / "set", rows, {"v0.mp4": 0, "v1.mp4": 1, "v2.mp4": 0})
    (tmp_path / "set" / "details.jsonl").unlink()
    (tmp_path / "set" / "errors.csv").write_text("filename,stage,reason\nv2.mp4,detect,no face\n")
    with caplog.at_level(logging.WARNING):
        data = submission_scores(submission, labels)
    assert data.videos == ["v0.mp4", "v1.mp4"] and data.scores.tolist() == [0.1, 0.8]
    assert "no details.jsonl" in caplog.text and "1 videos that failed" in caplog.text


def test_original_is_calibrated_on_a_submission_into_a_file_of_its_own(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    for file in named_ensemble("original").files:
        (cache / file.name).write_bytes(b"never loaded")
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(cache))
    names, labels = [f"v{i:02d}.mp4" for i in range(60)], np.array([0, 1] * 30)
    raw = _scores(6, labels)
    rows = [
        {"filename": n, "score": float(s), "ensemble_score": float(s), "calibrated": False, "error": None}
        for n, s in zip(names, raw, strict=True)
    ]
    rows.append({"filename": "bad.mp4", "score": 0.5, "error": {"filename": "bad.mp4", "stage": "x", "reason": "y"}})
    truth = dict(zip(names, labels.tolist(), strict=True))
    submission, labels_csv = _predicted(tmp_path / "set", rows, {**truth, "bad.mp4": 1})
    held_raw = _scores(8, labels)  # a draw the calibration improves (seed 7's it makes worse: refused, below)
    held_rows = [{"filename": n, "score": float(s), "error": None} for n, s in zip(names, held_raw, strict=True)]
    held, held_labels = _predicted(tmp_path / "held", held_rows, truth)
    with pytest.raises(SystemExit):
        calibrate.main(["--ensemble", "original", "--submission", str(submission), "--labels", str(labels_csv)])
    with pytest.raises(InputError, match="not a training run's best checkpoint"):
        calibrate.main(["--ensemble", "original", "--oof", "--out", str(tmp_path / "o.yaml")])
    out = tmp_path / "mine" / "original.yaml"
    argv = ["--ensemble", "original", "--submission", str(submission), "--labels", str(labels_csv), "--out", str(out)]
    assert calibrate.main([*argv, "--held-out", str(held), "--held-out-labels", str(held_labels)]) == 0
    members = read_ensemble_file(out)
    assert [m["path"] for m in members] == [(cache / f.name).resolve() for f in named_ensemble("original").files]
    assert all(m["path"].is_absolute() and m["encoder"] == "tf_efficientnet_b7_ns" for m in members)
    assert ensemble_detector_scale(out) == 0.5, "the file scores at the original's scale, as 'original' does"
    calibration = ensemble_calibration(out)
    block = _block(out)
    assert block["fitted_on"]["videos"] == 60  # bad.mp4 failed: left out
    assert block["temperature"] == pytest.approx(fit_calibration(labels, raw)["temperature"], rel=1e-6)
    held_out = block["fitted_on"]["held_out"]
    assert (held_out["videos"], held_out["real"], held_out["fake"]) == (60, 30, 30)
    after = calibration.probability(held_raw)
    assert held_out["log_loss_after"] == pytest.approx(competition_log_loss(labels, after), abs=1e-6)
    assert held_out["log_loss_before"] == pytest.approx(competition_log_loss(labels, held_raw), abs=1e-6)
    assert "held:aft" in capsys.readouterr().out


def test_calibrating_again_to_another_folder_replaces_the_block_and_keeps_the_paths_right(two_folds, tmp_path):
    ensemble = two_folds["ensemble"]
    assert calibrate.main(["--ensemble", str(ensemble), "--oof", "--method", "platt"]) == 0
    moved = tmp_path / "elsewhere" / "deeper" / "ensemble.yaml"
    assert calibrate.main(["--ensemble", str(ensemble), "--oof", "--out", str(moved)]) == 0
    assert [m["path"].resolve() for m in read_ensemble_file(moved)] == [
        m["path"].resolve() for m in read_ensemble_file(ensemble)
    ]
    assert ensemble_calibration(moved).method_parameters()["method"] == "temperature"
    assert ensemble_calibration(ensemble).method_parameters()["method"] == "platt"  # the source is left alone
    document = yaml.safe_load(ensemble.read_text())
    document["members"][0]["weight"] = 5.0  # the stored calibration no longer fits: calibrate replaces it
    ensemble.write_text(yaml.safe_dump(document, sort_keys=False))
    assert calibrate.main(["--ensemble", str(ensemble), "--oof"]) == 0
    replaced = ensemble_calibration(ensemble)
    assert replaced.method_parameters()["method"] == "temperature"
    assert [entry["weight"] for entry in _block(ensemble)["members"]] == [5.0, 3.0, 2.0]


def test_help_explains_the_sources_and_the_rates(capsys):
    with pytest.raises(SystemExit) as exit_info:
        calibrate.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "python -m inference.calibrate" in text
    assert all(option in text for option in ("--oof", "--submission", "--fpr", "exit status", "comments"))


# ---------------------------------------------------------------- review fixes


def test_oof_scores_say_how_they_were_made_and_warn_where_they_are_not_predicts(two_folds, caplog):
    ensemble = two_folds["ensemble"]
    with caplog.at_level(logging.WARNING):
        assert calibrate.main(["--ensemble", str(ensemble), "--oof", "--fpr", "0.05"]) == 0
    fitted_on = _block(ensemble)["fitted_on"]
    assert fitted_on["scores"] == (
        "training's out-of-fold predictions (mean of each video's crops); each video scored by 1 or 2 of 3 members"
    )
    assert "60 of 60 videos were scored by fewer runs than the ensemble's 3 members" in caplog.text
    assert OOF_WARNING in caplog.text  # a 5% point was stored from them
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert calibrate.main(["--ensemble", str(ensemble), "--oof", "--fpr", "0.01"]) == 0  # 30 reals: none stored
    assert OOF_WARNING not in caplog.text and "needs 99 real videos" in caplog.text


def test_runs_that_all_scored_every_video_are_not_warned_of(tmp_path, caplog):
    weights = tmp_path / "weights"
    videos, labels = [f"v{i}" for i in range(60)], np.array([0, 1] * 30)
    runs = [
        _run(weights, "x", videos, labels, _scores(8, labels)),
        _run(weights, "y", videos, labels, _scores(9, labels)),
    ]
    out = tmp_path / "e.yaml"
    with caplog.at_level(logging.WARNING):
        assert calibrate.main(["--runs", *map(str, runs), "--out", str(out), "--fpr", "0.05"]) == 0
    assert _block(out)["fitted_on"]["scores"].endswith("each video scored by 2 of 2 members")
    assert "fewer runs" not in caplog.text and OOF_WARNING in caplog.text


def test_the_block_records_each_checkpoints_size_and_sha256(two_folds):
    ensemble = two_folds["ensemble"]
    assert calibrate.main(["--ensemble", str(ensemble), "--oof"]) == 0
    first = _block(ensemble)["members"][0]
    digest = hashlib.sha256(b"not a checkpoint").hexdigest()
    assert (first["checkpoint"], first["encoder"], first["bytes"], first["sha256"]) == (
        "../weights/a_best.pt",
        None,
        16,
        digest,
    )
    (ensemble.parent.parent / "weights" / "a_best.pt").write_bytes(b"retrained, bigger")
    with pytest.raises(CalibrationFileError, match=r"member \.\./weights/a_best\.pt was retrained or replaced"):
        ensemble_calibration(ensemble)


# separable scores (now fitted inside the bounds) and the refusals: tests/test_calibrate_guard.py


def test_the_source_of_a_submission_is_predicts_scores(tmp_path):
    names, labels = [f"v{i:02d}.mp4" for i in range(60)], np.array([0, 1] * 30)
    rows = [{"filename": n, "score": float(s), "error": None} for n, s in zip(names, _scores(10, labels), strict=True)]
    submission, labels_csv = _predicted(tmp_path / "set", rows, dict(zip(names, labels.tolist(), strict=True)))
    ensemble = _ensemble(tmp_path / "e.yaml", [("m.pt", 1.0)])
    (tmp_path / "m.pt").write_bytes(b"stand-in")
    argv = ["--ensemble", str(ensemble), "--submission", str(submission), "--labels", str(labels_csv)]
    assert calibrate.main([*argv, "--held-out", str(submission), "--held-out-labels", str(labels_csv)]) == 0
    fitted_on = _block(ensemble)["fitted_on"]
    assert fitted_on["scores"] == fitted_on["held_out"]["scores"] == "inference.predict (as applied)"
