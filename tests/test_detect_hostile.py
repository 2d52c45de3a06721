"""inference.detect when a model or the --explain folder misbehaves: a NaN score is that file's
error in strict JSON, never a verdict; an explanation that cannot be written leaves the verdicts
as a run without --explain gives them."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from inference.serving import detection as detect
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


def _refuse_constant(name: str):
    raise ValueError(f"not strict JSON: {name}")


def strict_json(line: str) -> dict:
    """json.loads that refuses NaN, Infinity and -Infinity, as a strict parser (or JSON.parse) does."""
    return json.loads(line, parse_constant=_refuse_constant)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(builtin_photos()["astronaut"]).save(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("hostile_models")
    good = save_tiny_checkpoint(folder / "good.pt", seed=3)
    # Every weight finite (a NaN weight is refused at load), but the first batch norm scales by 3e38:
    # the next convolution sums +inf and -inf, and the model scores NaN.
    nan = save_tiny_checkpoint(folder / "overflowing.pt", seed=4)
    checkpoint = torch.load(nan, weights_only=True)
    checkpoint["state_dict"]["encoder.bn1.weight"].fill_(3e38)
    torch.save(checkpoint, nan)
    return {"good": good, "nan": nan}


def test_a_model_that_scores_nan_makes_the_file_an_error_in_strict_json(photo, models, capsys):
    arguments = [str(photo), "--runtime", "torch", "--models", str(models["nan"]), str(models["good"])]
    assert detect.main([*arguments, "--json"]) == 1, "a file that could not be judged"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    document = strict_json(lines[0])
    assert document["verdict"] is None and document["probability"] is None
    assert document["error"]["stage"] == "classify"
    assert document["error"]["message"].startswith("model overflowing.pt produced non-finite scores")

    assert detect.main(arguments) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"error: {photo}: model overflowing.pt produced non-finite scores"), line


def test_a_threshold_that_is_no_probability_is_a_usage_error(photo, capsys):
    for threshold in ("nan", "1.5"):
        with pytest.raises(SystemExit) as caught:
            detect.parse_args([str(photo), "--threshold", threshold])
        assert caught.value.code == 2
        assert "a threshold is a probability from 0 to 1" in capsys.readouterr().err


def test_explanations_that_cannot_be_written_leave_the_verdicts_standing(photo, models, tmp_path, capsys, caplog):
    arguments = [str(photo), str(photo), "--runtime", "torch", "--models", str(models["good"])]
    assert detect.main(arguments) == 0
    plain = capsys.readouterr().out
    assert plain.startswith(("FAKE", "REAL")) and len(plain.splitlines()) == 2

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")  # below a regular file nothing can be made, not even by root
    assert detect.main([*arguments, "--explain", str(blocker / "explain")]) == 0
    assert capsys.readouterr().out == plain, "the same verdict lines as without --explain"
    assert "no explanation" in caplog.text and "no report" in caplog.text


def test_a_file_whose_explanation_fails_keeps_its_verdict_in_the_json_and_the_report(
    photo, models, tmp_path, capsys, caplog
):
    explain_dir = tmp_path / "explain"
    explain_dir.mkdir()
    (explain_dir / photo.name).write_text("in the way of the photo's folder\n")
    arguments = [str(photo), "--runtime", "torch", "--models", str(models["good"]), "--json"]
    assert detect.main([*arguments, "--explain", str(explain_dir)]) == 0
    document = strict_json(capsys.readouterr().out)
    assert document["error"] is None and document["verdict"] in ("FAKE", "REAL")
    assert document["faces"] == 1 and 0 <= document["probability"] <= 1
    assert document["explanation"]["error"].startswith(str(explain_dir / photo.name))
    assert "no explanation" in caplog.text
    report = (explain_dir / "report.html").read_text()
    assert f"{document['verdict']} &mdash; P(fake) {document['probability']:.3f}" in report
    assert "no explanation: " in report
