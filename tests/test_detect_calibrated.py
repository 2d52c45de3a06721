"""inference.detect and the page with an ensemble file that carries a `calibration:` block: the
probabilities calibrated (the file's, each person's, each frame's), the raw score kept, the verdict
taken at the stored operating point on the raw score, the share of the reference reals that score
as high (and where they come from); errors for an operating point there is none of; --uncalibrated
as the file without the block."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from common.cli import InputError
from inference.models.ensemble import Member
from inference.models.ensemble_calibration import CalibrationFileError, OperatingPoint, member_fingerprint
from inference.models.ensemble_file import ensemble_calibration
from inference.pipeline.faces import VideoFaces
from inference.scoring.operating_points import reals_needed
from inference.serving import detection as detect
from inference.serving.judge_worker import judge_file, load_models
from inference.serving.page import parse_args as page_arguments
from inference.serving.page import verdict_markdown
from inference.serving.verdict import summary_line
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint
from tests.test_detect import judged

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

MEMBERS = [{"checkpoint": "a.pt", "weight": 1.0}, {"checkpoint": "b.pt", "weight": 3.0}]
SLOPE = 2.0  # the hand-written Platt calibration's `a`; its `b` puts the photo's probability near 0.82
RUN = ["--runtime", "torch", "--device", "cpu"]


def platt(p: float, a: float, b: float) -> float:
    """Platt scaling by hand: sigmoid(a * logit(p) + b)."""
    return 1 / (1 + math.exp(-(a * math.log(p / (1 - p)) + b)))


def detect_run(arguments: list[str]) -> tuple[int, list[str], str]:
    """detect.main's exit status, its standard output's lines and its standard error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = detect.main(arguments)
    return code, out.getvalue().splitlines(), err.getvalue()


def write_ensemble(path: Path, calibration: dict | None = None) -> Path:
    document = {"members": MEMBERS} | ({"calibration": calibration} if calibration else {})
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A photo, a two-member ensemble file without calibration, its document, and one with a
    calibration written around that document's score."""
    folder = tmp_path_factory.mktemp("calibrated")
    save_tiny_checkpoint(folder / "a.pt", seed=5)
    save_tiny_checkpoint(folder / "b.pt", seed=6)
    photo = folder / "astronaut.jpg"
    Image.fromarray(builtin_photos()["astronaut"]).save(photo)
    plain = write_ensemble(folder / "plain.yaml")
    code, [line], _ = detect_run([str(photo), "--ensemble", str(plain), *RUN, "--json"])
    assert code == 0
    raw = json.loads(line)
    s = raw["probability"]
    assert 0.25 < s < 0.75, "a random tiny model scores the photo near 0.5 (the points below are placed around it)"
    b = round(1.5 - SLOPE * math.log(s / (1 - s)), 4)
    # the 1% point lies just above the photo's score (REAL there, though its calibrated probability
    # is ~0.82), the 5% point below it (FAKE there)
    points = [
        {"fpr": fpr, "score": round(s + d, 4), "probability": round(platt(s + d, SLOPE, b), 4), "reals": n, "rank": k}
        for fpr, d, n, k in ((0.05, -0.03, 40, 2), (0.01, 0.03, 120, 1))
    ]
    real_scores = sorted(round(min(max(s + d, 0.0), 1.0), 4) for d in (-0.2, -0.1, -0.05, 0.02, 0.04))
    block = {
        "method": "platt",
        "a": SLOPE,
        "b": b,
        "members": member_fingerprint(MEMBERS, folder),  # as inference.calibrate records them
        "operating_points": points,
        "real_scores": real_scores,
        "fitted_on": {"source": "submission: labelled/submission.csv", "videos": 5},  # written by hand
    }
    calibrated = write_ensemble(folder / "calibrated.yaml", block)
    return {"folder": folder, "photo": photo, "plain": plain, "raw": raw, "block": block, "calibrated": calibrated}


def _judged(world, *options: str) -> dict:
    code, [line], _ = detect_run(
        [str(world["photo"]), "--ensemble", str(world["calibrated"]), *RUN, "--json", *options]
    )
    assert code == 0
    return json.loads(line)


def test_the_probabilities_are_calibrated_and_the_stored_1_percent_point_decides(world):
    raw, block = world["raw"], world["block"]
    document = _judged(world)
    s = raw["probability"]
    assert document["score"] == s, "the raw score is the uncalibrated run's probability"
    by_hand = platt(s, block["a"], block["b"])
    assert document["probability"] == pytest.approx(by_hand, abs=2e-4) and document["probability"] > 0.8
    assert document["calibrated"] is True
    assert document["calibration"] == {
        "file": str(world["calibrated"]),
        "method": "platt",
        "a": block["a"],
        "b": block["b"],
        "settings": None,  # a block written before settings were recorded
        "forced": False,
        "fitted_on": {"source": "submission: labelled/submission.csv", "videos": 5},
    }
    one_percent = block["operating_points"][1]
    assert document["verdict"] == "REAL", "the raw score is below the 1% point's threshold"
    assert document["verdict_text"] == "REAL at the 1% false-positive threshold"
    assert document["operating_point"] == {
        "fpr": 0.01,
        "score_threshold": one_percent["score"],
        "probability_threshold": round(platt(one_percent["score"], block["a"], block["b"]), 4),
        "reals": 120,
    }
    assert document["threshold"] == document["operating_point"]["probability_threshold"]
    assert document["real_quantile"] == pytest.approx(2 / 5), "2 of the 5 reals score at least as high"
    assert document["real_videos"] == 5
    # people, faces and frames on the calibrated scale; each model's score raw
    [person] = document["people"]
    assert person["probability"] == pytest.approx(platt(raw["people"][0]["probability"], SLOPE, block["b"]), abs=2e-4)
    assert person["track"][0]["probability"] == pytest.approx(
        platt(raw["people"][0]["track"][0]["probability"], SLOPE, block["b"]), abs=2e-4
    )
    assert document["per_frame"][0]["probability"] == pytest.approx(
        platt(raw["per_frame"][0]["probability"], SLOPE, block["b"]), abs=2e-4
    )
    assert document["models"] == raw["models"]

    five = _judged(world, "--operating-point", "fpr=0.05")
    assert five["verdict"] == "FAKE" and five["verdict_text"] == "FAKE at the 5% false-positive threshold"
    assert five["probability"] == document["probability"] and five["operating_point"]["reals"] == 40


def test_a_threshold_given_with_a_calibration_decides_on_the_calibrated_probability(world):
    for threshold, verdict in (("0.6", "FAKE"), ("0.9", "REAL")):
        document = _judged(world, "--threshold", threshold)
        assert document["verdict"] == verdict and document["operating_point"] is None
        assert document["threshold"] == float(threshold) and document["calibrated"] is True
    assert document["verdict_text"] == "REAL at or below 0.9"


def test_the_line_says_what_decided_and_how_many_reals_score_as_high(world):
    code, [line], _ = detect_run([str(world["photo"]), "--ensemble", str(world["calibrated"]), *RUN])
    assert code == 0
    assert line.startswith("REAL  0.8") and line.endswith(
        "astronaut.jpg  (1 face, 1 person)  REAL at the 1% false-positive threshold; "
        "2 of 5 real videos score this high (a labelled held-out set)"
    )
    code, [plain], _ = detect_run([str(world["photo"]), "--ensemble", str(world["plain"]), *RUN])
    verdict = world["raw"]["verdict"]
    assert plain.endswith(f"  {'FAKE above 0.5' if verdict == 'FAKE' else 'REAL at or below 0.5'}")


def test_uncalibrated_gives_the_numbers_of_the_file_without_the_block(world, caplog):
    caplog.set_level("INFO", logger="inference.serving.verdict_options")
    document = _judged(world, "--uncalibrated")
    assert f"--uncalibrated: ignoring the calibration in {world['calibrated']}" in caplog.text
    raw = dict(world["raw"])
    for kept in (document, raw):
        del kept["seconds"]
    assert document == raw
    assert document["calibrated"] is False and document["calibration"] is None
    assert document["operating_point"] is None and document["real_quantile"] is None
    assert document["probability"] == document["score"]


def test_operating_points_there_are_none_of_are_usage_errors(world):
    photo = str(world["photo"])
    code, lines, error = detect_run([photo, "--ensemble", str(world["calibrated"]), *RUN, "--operating-point", "0.2"])
    assert code == 2 and lines == []
    assert error.startswith(f"error: {world['calibrated']}: no operating point at fpr=0.2 (stored: fpr=0.05, fpr=0.01)")
    assert f"--fpr 0.2 (it needs at least {reals_needed(0.2)} held-out real videos)" in error
    assert error.count("\n") == 1

    code, _, error = detect_run([photo, "--ensemble", str(world["plain"]), *RUN, "--operating-point", "fpr=0.01"])
    assert code == 2
    assert error.startswith(f"error: {world['plain']}: no `calibration:` block to take --operating-point fpr=0.01")
    assert f"--fpr 0.01 (it needs at least {reals_needed(0.01)} held-out real videos)" in error

    calibrated = ["--ensemble", str(world["calibrated"]), *RUN]
    code, _, error = detect_run([photo, *calibrated, "--operating-point", "fpr=0.01", "--uncalibrated"])
    assert code == 2 and "--operating-point is taken from the calibration that --uncalibrated ignores" in error
    code, _, error = detect_run([photo, *calibrated, "--models", str(world["folder"] / "a.pt")])
    assert code == 2 and "its calibration was fitted for its own members" in error
    with pytest.raises(SystemExit) as exit_:
        detect.parse_args([photo, "--threshold", "0.5", "--operating-point", "fpr=0.01"])
    assert exit_.value.code == 2


def two_people() -> tuple[VideoFaces, list[Member]]:
    """One frame with two faces far apart (two people), and one frame model to weigh them."""
    faces = VideoFaces(Path("clip.mp4"), [0])
    for box in ([0, 0, 10, 10], [50, 0, 60, 10]):
        faces.crops.append(np.zeros((4, 4, 3), np.uint8))
        faces.face_frames.append(0)
        faces.boxes.append(box)
        faces.found.append("detected")
    return faces, [Member("a", None, "resnet18", 64, (0,) * 3, (1,) * 3, 1.0)]


def test_a_person_is_judged_by_the_raw_score_and_read_on_the_calibrated_scale(world):
    """--per-person: the most fake person's raw score decides; what is shown is calibrated."""
    calibration = ensemble_calibration(world["calibrated"])
    faces, members = two_people()
    per_model = [np.array([0.3, 0.6])]
    b = world["block"]["b"]
    point = OperatingPoint(fpr=0.05, score=0.55, probability=platt(0.55, SLOPE, b), reals=40, rank=2)
    arguments = (Path("clip.mp4"), faces, per_model, members, "mean", 0.5)
    document = judged(*arguments, True, calibration=calibration, operating_point=point)
    assert document["score"] == 0.6 and document["verdict"] == "FAKE", "the most fake person: 0.6 > 0.55"
    assert document["probability"] == pytest.approx(platt(0.6, SLOPE, b), abs=1e-4)
    assert [p["probability"] for p in document["people"]] == pytest.approx(
        [platt(0.3, SLOPE, b), platt(0.6, SLOPE, b)], abs=1e-4
    )
    reals = world["block"]["real_scores"]
    assert document["real_quantile"] == pytest.approx(sum(r >= 0.6 for r in reals) / len(reals))
    assert summary_line(document).startswith(f"FAKE  {document['probability']:.3f}  clip.mp4  (2 faces")
    everyone = judged(*arguments, False, calibration=calibration, operating_point=point)
    assert everyone["score"] == 0.45 and everyone["verdict"] == "REAL", "both people: (0.3 + 0.6) / 2 < 0.55"
    assert everyone["verdict_text"] == "REAL at the 5% false-positive threshold"


def test_the_page_worker_judges_with_the_calibration_and_the_page_says_so(world, tmp_path):
    arguments = ["--ensemble", str(world["calibrated"]), *RUN]
    models = load_models(page_arguments(arguments))
    document, images = judge_file(models, world["photo"], tmp_path / "explanation")
    expected = _judged(world)
    for key in ("verdict", "verdict_text", "probability", "score", "operating_point", "real_quantile", "calibration"):
        assert document[key] == expected[key], key
    heatmap = document["explanation"]["heatmaps"][0]
    assert heatmap["probability"] == expected["per_frame"][0]["probability"], "heatmaps on the calibrated scale"
    text = verdict_markdown(document)
    assert text.startswith(f"## REAL: P(fake) = {document['probability']:.3f} (calibrated)\n")
    assert text.endswith(
        "REAL at the 1% false-positive threshold; 2 of 5 real videos score this high (a labelled held-out set)."
    )
    with pytest.raises(InputError, match=r"no operating point at fpr=0\.2"):
        load_models(page_arguments([*arguments, "--operating-point", "fpr=0.2"]))


def test_the_share_of_reals_is_a_count_below_100_reals_and_a_percentage_from_100():
    from inference.serving.verdict import verdict_explanation

    text = "FAKE at the 1% false-positive threshold"
    oof, held_out = "training's out-of-fold videos", "a labelled held-out set"
    few = {"verdict_text": text, "real_quantile": 0.0, "real_videos": 6, "real_videos_from": oof}
    many = {"verdict_text": text, "real_quantile": 2 / 250, "real_videos": 250, "real_videos_from": held_out}
    assert verdict_explanation(few) == f"{text}; 0 of 6 real videos score this high (training's out-of-fold videos)"
    assert verdict_explanation(many) == f"{text}; 0.8% of real videos score this high (a labelled held-out set)"
    unknown = {"verdict_text": text, "real_quantile": 0.0, "real_videos": 6}
    assert verdict_explanation(unknown) == f"{text}; 0 of 6 real videos score this high (their origin not recorded)"
    plain = {"verdict_text": "REAL at or below 0.5", "real_quantile": None}
    assert verdict_explanation(plain) == "REAL at or below 0.5"


@pytest.mark.parametrize("calibrated", [False, True])
def test_per_person_verdicts_are_decided_on_unrounded_scores(world, calibrated):
    """A person's score of 0.55004 is above a threshold of 0.55002, though it shows as 0.55."""
    faces, members = two_people()
    arguments = (Path("clip.mp4"), faces, [np.array([0.3, 0.55004])], members, "mean")
    if calibrated:
        calibration = ensemble_calibration(world["calibrated"])
        point = OperatingPoint(fpr=0.05, score=0.55002, probability=calibration.probability(0.55002), reals=40, rank=2)
        document = judged(*arguments, 0.5, True, calibration=calibration, operating_point=point)
    else:
        document = judged(*arguments, 0.55002, True)
    assert document["verdict"] == "FAKE", "0.55004 > 0.55002"
    assert document["score"] == 0.55, "shown rounded"
    if not calibrated:
        assert [p["probability"] for p in document["people"]] == [0.3, 0.55] and document["probability"] == 0.55


def test_a_calibration_block_that_breaks_the_reader_is_one_line_or_ignored_with_uncalibrated(world, caplog):
    """`operating_points: 5`: exit 2 and one line naming the file (detect and the page); with
    --uncalibrated, ignored (an INFO line says so) and judged as without the block."""
    from inference.serving import page as app

    broken = write_ensemble(world["folder"] / "broken.yaml", dict(world["block"], operating_points=5))
    photo = str(world["photo"])
    code, lines, error = detect_run([photo, "--ensemble", str(broken), *RUN])
    assert code == 2 and lines == [] and error.count("\n") == 1 and error.startswith(f"error: {broken}: ")

    caplog.set_level("INFO", logger="inference.serving.verdict_options")
    code, [line], _ = detect_run([photo, "--ensemble", str(broken), *RUN, "--json", "--uncalibrated"])
    assert code == 0
    assert f"--uncalibrated: ignoring {broken}'s calibration, which cannot be read" in caplog.text
    document, raw = json.loads(line), dict(world["raw"])
    for kept in (document, raw):
        del kept["seconds"]
    assert document == raw
    models = load_models(page_arguments(["--ensemble", str(broken), *RUN, "--uncalibrated"]))
    assert models.rule.calibration is None and models.rule.threshold == 0.5

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert app.main(["--ensemble", str(broken), *RUN]) == 2
    assert err.getvalue() == error, "the page says what detect says"


@pytest.mark.parametrize("unexpected", [TypeError, KeyError, AttributeError])
def test_whatever_reading_a_block_raises_is_a_calibration_error_or_ignored_with_uncalibrated(
    unexpected, monkeypatch, caplog
):
    """However a malformed block breaks the reader, verdict_rule says it in one line naming the
    file (a CalibrationFileError), and --uncalibrated ignores it with an INFO line."""
    from inference.serving import verdict_options

    def breaks(*_):
        raise unexpected("'int' object is not iterable")

    monkeypatch.setattr(verdict_options, "load_calibration", breaks)
    monkeypatch.setattr(verdict_options, "ensemble_calibration", breaks)
    args = detect.parse_args(["clip.mp4", "--ensemble", "mine.yaml"])
    with pytest.raises(CalibrationFileError, match=r"^mine\.yaml: its `calibration:` block cannot be read \("):
        verdict_options.verdict_rule(args)
    caplog.set_level("INFO", logger="inference.serving.verdict_options")
    rule = verdict_options.verdict_rule(detect.parse_args(["clip.mp4", "--ensemble", "mine.yaml", "--uncalibrated"]))
    assert rule == verdict_options.VerdictRule(None, None, 0.5)
    assert "--uncalibrated: ignoring mine.yaml's calibration, which cannot be read" in caplog.text


def test_a_record_of_the_fit_holding_a_nan_stops_detect_naming_the_ensemble_file(world):
    """`fitted_on` was never checked: a NaN there made every file fail, each with an error that
    blamed the file ("a non-finite number in the result"). Now the ensemble file is refused."""
    fitted_on = {"source": "submission: labelled/submission.csv", "videos": 5, "log_loss_before": math.nan}
    path = write_ensemble(world["folder"] / "nan_record.yaml", {**world["block"], "fitted_on": fitted_on})
    code, lines, error = detect_run([str(world["photo"]), "--ensemble", str(path), *RUN, "--json"])
    assert (code, lines) == (2, []), (code, lines)
    assert error.splitlines()[-1] == (
        f"error: {path}: calibration `fitted_on.log_loss_before` must be a finite number from 0 to 100, got nan"
    )


def test_an_alias_bomb_in_the_calibration_block_is_one_line_naming_the_file(world):
    """A 1.2 KB block of nine levels of nine aliases took 8 GB and ended in a MemoryError traceback."""
    from tests.test_safe_yaml import billion_laughs

    block = {**world["block"], "fitted_on": "RECORD"}
    text = yaml.safe_dump({"members": MEMBERS, "calibration": block}, sort_keys=False)
    path = world["folder"] / "laughs.yaml"
    path.write_text(billion_laughs() + text.replace("fitted_on: RECORD", "fitted_on: {videos: 5, laughs: *l8}"))
    code, lines, error = detect_run([str(world["photo"]), "--ensemble", str(path), *RUN, "--json"])
    assert (code, lines) == (2, []), (code, lines)
    assert error.splitlines()[-1].startswith(
        f"error: {path}: cannot read the ensemble file (the YAML document would hold more than 1,000,000 values"
    )
