"""Ensemble files: relative paths, per-member encoder, size and weight."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common import cli
from inference.models.ensemble import load_member, put_to_center
from inference.models.ensemble_file import read_ensemble_file
from inference.serving import detection as detect
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint
from training.models.zoo import create_model

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


def test_members_resolve_paths_and_settings(tmp_path):
    torch.save(create_model("resnet18").state_dict(), tmp_path / "bare.pt")
    (tmp_path / "ensemble.yaml").write_text(
        "members:\n  - checkpoint: bare.pt\n    encoder: resnet18\n    input_size: 72\n    weight: 2\n"
    )
    [entry] = read_ensemble_file(tmp_path / "ensemble.yaml")
    assert entry["path"] == tmp_path / "bare.pt" and entry["weight"] == 2.0
    member = load_member(entry["path"], torch.device("cpu"), entry["encoder"], entry["input_size"], entry["weight"])
    assert (member.encoder, member.input_size, member.weight) == ("resnet18", 72, 2.0)
    (tmp_path / "broken.yaml").write_text("members:\n  - weight: 1\n")
    with pytest.raises(ValueError, match="member 0 has no `checkpoint`"):
        read_ensemble_file(tmp_path / "broken.yaml")


def test_put_to_center_pads_with_black_around_the_face():
    face = np.full((30, 50, 3), 200, np.uint8)
    canvas = put_to_center(face, 60)
    assert canvas.shape == (60, 60, 3)
    rows, cols = np.nonzero(canvas[..., 0])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (15, 44, 5, 54)


def test_the_original_ensemble_file_lists_seven_b7_checkpoints_under_weights():
    from tests.conftest import REPO_ROOT

    members = read_ensemble_file(REPO_ROOT / "configs" / "ensemble_original.yaml")
    assert len(members) == 7
    assert all(m["encoder"] == "tf_efficientnet_b7_ns" and m["input_size"] == 380 for m in members)
    assert all(m["path"].resolve().parent == (REPO_ROOT / "weights").resolve() for m in members)


@pytest.fixture(scope="module")
def two_members(tmp_path_factory) -> Path:
    """A folder with two tiny checkpoints (a.pt, b.pt) and a photo of a face."""
    folder = tmp_path_factory.mktemp("two_members")
    save_tiny_checkpoint(folder / "a.pt", seed=5)
    save_tiny_checkpoint(folder / "b.pt", seed=6)
    Image.fromarray(builtin_photos()["astronaut"]).save(folder / "astronaut.jpg")
    return folder


def _detect_with_weights(folder: Path, weights: tuple[str, str], capsys) -> tuple[int, list[str], str]:
    ensemble = folder / "ensemble.yaml"
    ensemble.write_text(
        f"members:\n  - {{checkpoint: a.pt, weight: {weights[0]}}}\n  - {{checkpoint: b.pt, weight: {weights[1]}}}\n"
    )
    arguments = [str(folder / "astronaut.jpg"), "--ensemble", str(ensemble), "--runtime", "torch", "--json"]
    status = cli.run(detect.main, arguments)
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def test_weights_are_divided_by_their_sum_once_so_tiny_ones_average_as_equal_ones(two_members, capsys):
    """Weights of 5e-324 on both members turned scores of 0.53 and 0.50 into FAKE 1.000: the
    weighted sum underflowed. Divided by their sum at load, they are the weights 1 and 1."""

    def verdict(weights: tuple[str, str]) -> dict:
        status, [line], _ = _detect_with_weights(two_members, weights, capsys)
        assert status == 0
        return {key: value for key, value in json.loads(line).items() if key != "seconds"}

    equal = verdict(("1", "1"))
    scores = [model["score"] for model in equal["models"]]
    assert equal["probability"] == pytest.approx(sum(scores) / 2, abs=1e-4), equal
    assert [model["weight"] for model in equal["models"]] == [0.5, 0.5], "each member's share of the ensemble"
    assert verdict(("5.0e-324", "5.0e-324")) == equal
    uneven = verdict(("3.0e-323", "1.0e-323"))
    assert uneven["probability"] == pytest.approx(0.75 * scores[0] + 0.25 * scores[1], abs=1e-4)


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        (("1.0e+308", "1.0e+308"), "the members' weights add up to inf; they must add up to a finite number above 0"),
        (("0", "0"), "the members' weights add up to 0.0; they must add up to a finite number above 0"),
    ],
)
def test_weights_whose_sum_is_not_finite_and_positive_are_refused_naming_the_file(
    weights, problem, two_members, capsys
):
    """1e308 on both members made each file's score non-finite (an error per file, exit 1): the
    ensemble file is refused instead, before a model is loaded."""
    status, out, err = _detect_with_weights(two_members, weights, capsys)
    assert (status, out) == (2, []) and "Traceback" not in err
    assert f"error: {two_members / 'ensemble.yaml'}: {problem}" in err.splitlines(), err


def test_normalised_weights_keep_the_ratios_at_the_ends_of_the_float_range():
    from inference.models.ensemble_file import normalised_weights

    assert normalised_weights([5e-324, 5e-324], "e.yaml") == [0.5, 0.5]
    assert normalised_weights([4e307, 1.2e308], "e.yaml") == pytest.approx([0.25, 0.75])
    assert normalised_weights([2.0, 0.0, 6.0], "e.yaml") == [0.25, 0.0, 0.75]
    with pytest.raises(ValueError, match=r"^e\.yaml: the members' weights add up to nan"):
        normalised_weights([math.nan], "e.yaml")
