"""inference.calibrate cannot make things worse: separable out-of-fold scores fit inside the bounds,
too few videos of a class are refused, a calibration that makes a held-out set worse is refused
(stored with --force, and the block and the verdicts say so), --uncalibrated-if-refused writes
the ensemble without one, and the block records the scoring settings of its scores."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from common import cli
from common.cli import InputError
from inference.calibration.methods import TEMPERATURE_BOUNDS, apply_calibration, fit_calibration
from inference.calibration.simulation import SCENARIOS, simulate
from inference.fitting import calibrate_ensemble as calibrate
from inference.fitting.calibration_guard import MIN_PER_CLASS, MIN_PER_CLASS_TABLE
from inference.models.ensemble_file import ensemble_calibration, read_ensemble_file
from inference.scoring.metrics import competition_log_loss
from inference.scoring.scoring_settings import TRAINING_VALIDATION
from inference.serving.verdict import verdict_explanation
from tests.test_calibrate import _block, _ensemble, _predicted, _run, _scores

SETTINGS = {
    "detector_scale": 0.5,
    "frames": 32,
    "strategy": "confident",
    "per_person": False,
    "tta": False,
    "recall_boost": True,
    "fast": False,
    "precision": "fp32",
    "faces_are_cropped": False,
}


def _refused(argv: list[str], capsys) -> str:
    """The one `error:` line calibrate ends with (exit status 2)."""
    capsys.readouterr()
    assert cli.run(calibrate.main, argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    return error.strip()


def _log_losses(fit_seed: int, held_seed: int) -> str:
    """The held-out log loss raw and calibrated, as calibrate words them, of `_labelled_set`s."""
    labels = np.r_[np.zeros(30, int), np.ones(30, int)]
    calibration = fit_calibration(labels, _scores(fit_seed, labels))
    held = _scores(held_seed, labels)
    before, after = (
        competition_log_loss(labels, held),
        competition_log_loss(labels, apply_calibration(held, calibration)),
    )
    return f"{before:.4f} raw, {after:.4f} calibrated"


def _labelled_set(folder, seed: int, reals: int = 30, fakes: int = 30, scoring: dict | None = SETTINGS):
    """A predicted labelled set (submission, details with their `scoring`, labels) of _scores(seed)."""
    names = [f"v{i:02d}.mp4" for i in range(reals + fakes)]
    labels = np.r_[np.zeros(reals, int), np.ones(fakes, int)]
    rows = [
        {"filename": n, "score": float(s), "ensemble_score": float(s), "calibrated": False, "error": None}
        | ({"scoring": scoring} if scoring is not None else {})
        for n, s in zip(names, _scores(seed, labels), strict=True)
    ]
    return _predicted(folder, rows, dict(zip(names, labels.tolist(), strict=True)))


@pytest.fixture
def model(tmp_path):
    ensemble = _ensemble(tmp_path / "e.yaml", [("m.pt", 1.0)])
    (tmp_path / "m.pt").write_bytes(b"stand-in")
    return ensemble


def test_separable_out_of_fold_scores_are_stored_inside_the_bounds(tmp_path):
    """Before, every real below every fake fitted the search's bound, 0.01 (0.000 and 1.000 for
    every test video), and was refused unless --allow-bound stored it."""
    weights = tmp_path / "weights"
    videos, labels = [f"v{i}" for i in range(60)], np.array([0, 1] * 30)
    rng = np.random.default_rng(0)
    separable = np.where(labels == 1, rng.uniform(0.55, 0.7, 60), rng.uniform(0.3, 0.45, 60))
    runs = [_run(weights, "x", videos, labels, separable), _run(weights, "y", videos, labels, separable)]
    out = tmp_path / "e.yaml"
    assert calibrate.main(["--runs", *map(str, runs), "--out", str(out)]) == 0
    block = _block(out)
    assert TEMPERATURE_BOUNDS[0] * 2 < block["temperature"] < 1, "sharpened, but not to the bound"
    probabilities = ensemble_calibration(out).probability(separable)
    assert probabilities.min() > 1e-3 and probabilities.max() < 1 - 1e-3, "none shows as 0.000 or 1.000"
    assert block["fitted_on"]["forced"] is False and "forced_over" not in block["fitted_on"]
    with pytest.raises(SystemExit):
        calibrate.main(["--runs", *map(str, runs), "--out", str(out), "--allow-bound"])  # gone: --force


def test_a_fit_at_a_search_bound_is_refused_and_stored_with_force(tmp_path, capsys):
    """Scores the wrong way round (every real above every fake) still fit the bound: refused."""
    videos, labels = [f"v{i}" for i in range(60)], np.array([0, 1] * 30)
    wrong_way = np.where(labels == 1, 0.3, 0.7) + np.linspace(0, 0.01, 60)
    run = _run(tmp_path / "weights", "x", videos, labels, wrong_way)
    out = tmp_path / "e.yaml"
    argv = ["--runs", str(run), "--out", str(out)]
    error = _refused(argv, capsys)
    assert "temperature 100 is at its search bound" in error and "flatten every probability" in error
    assert error.endswith("fit on more (or other) labelled videos, or pass --force to store it all the same")
    assert calibrate.main([*argv, "--force"]) == 0
    fitted_on = _block(out)["fitted_on"]
    assert fitted_on["forced"] is True and "temperature 100 is at its search bound" in fitted_on["forced_over"]


def test_too_few_videos_of_a_class_are_refused_naming_the_counts(tmp_path, capsys):
    weights = tmp_path / "weights"
    labels = np.array([0] * 6 + [1] * 12)  # the demo's out-of-fold videos: 6 real, 12 fake
    run = _run(weights, "x", [f"v{i}" for i in range(18)], labels, _scores(1, labels))
    out = tmp_path / "e.yaml"
    argv = ["--runs", str(run), "--out", str(out)]
    error = _refused(argv, capsys)
    assert error.endswith(
        f"6 real and 12 fake videos: a calibration needs at least {MIN_PER_CLASS} of each (--min-per-class; "
        "fitted on fewer its spread makes fresh videos worse too often)"
    )
    assert error.startswith("error: oof: ") and not out.exists()
    assert calibrate.main([*argv, "--min-per-class", "6"]) == 0, "a lower minimum, asked for"
    assert _block(out)["fitted_on"]["real"] == 6
    with pytest.raises(SystemExit):
        calibrate.parse_args([*argv, "--min-per-class", "0"])


def test_a_calibration_that_makes_the_held_out_set_worse_is_refused_or_forced(tmp_path, model, capsys):
    fit, fit_labels = _labelled_set(tmp_path / "fit", 6)
    held, held_labels = _labelled_set(tmp_path / "held", 7)  # a draw the fit's temperature makes worse
    argv = ["--ensemble", str(model), "--submission", str(fit), "--labels", str(fit_labels)]
    argv += ["--held-out", str(held), "--held-out-labels", str(held_labels)]
    error = _refused(argv, capsys)
    worse = _log_losses(6, 7)
    assert error == (
        f"error: submission: {held}: the calibration makes the held-out videos' log loss worse: {worse}; not stored "
        "(--force stores it)"
    )
    assert "calibration" not in yaml.safe_load(model.read_text()), "nothing written"

    assert calibrate.main([*argv, "--force"]) == 0
    fitted_on = _block(model)["fitted_on"]
    assert fitted_on["forced"] is True
    assert fitted_on["forced_over"] == f"the calibration makes the held-out videos' log loss worse: {worse}"
    assert capsys.readouterr().out.strip().endswith(f"stored with --force over: {fitted_on['forced_over']}")
    calibration = ensemble_calibration(model)
    assert calibration.forced == fitted_on["forced_over"]
    document = {
        "verdict_text": "REAL at or below 0.5",
        "real_quantile": 0.5,
        "real_videos": 30,
        "real_videos_from": calibration.reals_origin(),
        "calibration_forced": calibration.forced,
    }
    assert verdict_explanation(document) == (
        "REAL at or below 0.5; 15 of 30 real videos score this high (a labelled held-out set); its calibration was "
        f"stored with --force over: {fitted_on['forced_over']}"
    )


def test_a_held_out_set_it_improves_is_stored_and_the_last_line_says_both_log_losses(tmp_path, model, capsys):
    fit, fit_labels = _labelled_set(tmp_path / "fit", 6)
    held, held_labels = _labelled_set(tmp_path / "held", 8)
    argv = ["--ensemble", str(model), "--submission", str(fit), "--labels", str(fit_labels)]
    assert calibrate.main([*argv, "--held-out", str(held), "--held-out-labels", str(held_labels)]) == 0
    held_out = _block(model)["fitted_on"]["held_out"]
    assert held_out["log_loss_after"] < held_out["log_loss_before"]
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == f"calibration stored in {model}: held-out log loss {_log_losses(6, 8)}"


def test_uncalibrated_if_refused_writes_the_ensemble_without_a_calibration(tmp_path, model, capsys):
    fit, fit_labels = _labelled_set(tmp_path / "fit", 6)
    held, held_labels = _labelled_set(tmp_path / "held", 7)
    argv = ["--ensemble", str(model), "--submission", str(fit), "--labels", str(fit_labels)]
    assert calibrate.main(argv) == 0 and ensemble_calibration(model) is not None  # an earlier calibration
    held_argv = [*argv, "--held-out", str(held), "--held-out-labels", str(held_labels), "--uncalibrated-if-refused"]
    assert calibrate.main(held_argv) == 0
    assert "calibration" not in yaml.safe_load(model.read_text()) and ensemble_calibration(model) is None
    assert [m["weight"] for m in read_ensemble_file(model)] == [1.0]
    last = capsys.readouterr().out.strip().splitlines()[-1]
    worse = _log_losses(6, 7)
    assert last == (
        f"calibration refused: submission: {held}: the calibration makes the held-out videos' log loss worse: "
        f"{worse}; not stored (--force stores it); {model} written without one (uncalibrated); "
        f"held-out log loss {worse.split(' raw')[0]} raw, as it stays"
    )
    # ./run_all.sh's demo: 6 real and 12 fake out-of-fold videos make an uncalibrated ensemble file
    labels = np.array([0] * 6 + [1] * 12)
    runs = [_run(tmp_path / "weights", name, [f"v{i}" for i in range(18)], labels, _scores(2, labels)) for name in "xy"]
    out = tmp_path / "demo.yaml"
    assert calibrate.main(["--runs", *map(str, runs), "--out", str(out), "--uncalibrated-if-refused"]) == 0
    assert ensemble_calibration(out) is None and [m["weight"] for m in read_ensemble_file(out)] == [0.5, 0.5]
    assert "6 real and 12 fake videos" in capsys.readouterr().out


def test_the_block_records_the_settings_of_its_scores(tmp_path, model, two_runs):
    fit, fit_labels = _labelled_set(tmp_path / "fit", 6)
    held, held_labels = _labelled_set(tmp_path / "held", 8, scoring={**SETTINGS, "detector_scale": "rule"})
    argv = ["--ensemble", str(model), "--submission", str(fit), "--labels", str(fit_labels)]
    assert calibrate.main(argv) == 0
    assert _block(model)["settings"] == SETTINGS and ensemble_calibration(model).settings == SETTINGS
    other = r"scored with other settings than the videos fitted on: detector_scale 0\.5 \(fit\) vs rule \(held out\)$"
    with pytest.raises(InputError, match=other):
        calibrate.main([*argv, "--held-out", str(held), "--held-out-labels", str(held_labels)])
    # out-of-fold scores: training-validation, and the held-out set's settings beside them
    out = tmp_path / "oof.yaml"
    runs = ["--runs", *map(str, two_runs), "--out", str(out)]
    assert calibrate.main([*runs, "--held-out", str(held), "--held-out-labels", str(held_labels), "--force"]) == 0
    block = _block(out)
    assert block["settings"] == TRAINING_VALIDATION
    assert block["fitted_on"]["held_out"]["settings"] == {**SETTINGS, "detector_scale": "rule"}
    calibration = ensemble_calibration(out)
    assert calibration.reals_origin() == "training's out-of-fold videos"
    assert calibration.held_out_settings["detector_scale"] == "rule"


def test_details_scored_with_two_settings_are_refused(tmp_path, model):
    fit, fit_labels = _labelled_set(tmp_path / "fit", 6)
    details = fit.parent / "details.jsonl"
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    rows[3]["scoring"] = {**SETTINGS, "frames": 8}
    details.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(
        InputError, match=r"scored with different settings \(frames 32 \(first row\) vs 8 \(another\)\)"
    ):
        calibrate.main(["--ensemble", str(model), "--submission", str(fit), "--labels", str(fit_labels)])


@pytest.fixture
def two_runs(tmp_path):
    videos, labels = [f"v{i}" for i in range(60)], np.array([0, 1] * 30)
    return [
        _run(tmp_path / "weights", name, videos, labels, _scores(seed, labels)) for name, seed in (("x", 8), ("y", 9))
    ]


# ---------------------------------------------------------------- the minimum's simulation


def test_the_simulation_behind_the_minimum_says_what_the_help_says(capsys):
    """A quick rerun of python -m inference.calibration.simulation: on 3 videos of each class most
    fits make a calibrated model's fresh log loss materially worse; at the default few do."""
    calibrated, under = SCENARIOS[0], SCENARIOS[2]
    assert simulate(calibrated, 3, trials=40)["materially_worse"] > 0.6
    assert simulate(under, 3, trials=40)["materially_worse"] > 0.4
    assert simulate(calibrated, MIN_PER_CLASS, trials=40)["materially_worse"] <= 0.1
    assert simulate(under, MIN_PER_CLASS, trials=40)["materially_worse"] <= 0.1
    assert max(MIN_PER_CLASS_TABLE[MIN_PER_CLASS]) <= 0.05 < max(MIN_PER_CLASS_TABLE[25])
    with pytest.raises(SystemExit):
        calibrate.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(default {MIN_PER_CLASS}:" in help_text and "at most 4.1% of draws" in help_text


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_scores_that_are_all_the_same_are_refused_by_either_method(method):
    from inference.calibration.methods import FitAtBoundError, fit_calibration

    labels = np.array([0] * 40 + [1] * 40)
    with pytest.raises(FitAtBoundError, match="every score is 0.7: the scores tell real from fake not at all"):
        fit_calibration(labels, np.full(80, 0.7), method)


@pytest.mark.parametrize("bad", ["nan", "inf", "-0.2", "1.5", "x"])
def test_a_submission_probability_outside_0_to_1_is_refused_naming_the_file_line_and_video(bad, tmp_path):
    from inference.scoring.submission_scoring import ScoreError, read_submission

    rows = [f"v{i}.mp4,0.{i + 1}" for i in range(5)]
    rows[3] = f"v3.mp4,{bad}"
    (tmp_path / "submission.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        ScoreError, match=rf"submission.csv: line 5: '{re.escape(bad)}' for v3.mp4 is not a probability"
    ):
        read_submission(tmp_path / "submission.csv")


@pytest.mark.parametrize("argv", [["--trials", "0"], ["--trials", "-5"], ["--per-class", "10", "0"]])
def test_the_simulation_refuses_no_trials_or_empty_classes_in_one_line(argv, capsys):
    """`--trials 0` printed a table of nan with numpy's warnings and exited 0."""
    from inference.calibration import simulation

    with pytest.raises(SystemExit) as stopped:
        simulation.main(argv)
    assert stopped.value.code == 2
    assert "must be more than 0" in capsys.readouterr().err
