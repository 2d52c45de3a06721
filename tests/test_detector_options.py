"""How a run's options become its detectors (inference/detectors/options.py): other papers' files
named on the command line (`--models NAME:FILE`) and in ensemble files (`detector: NAME`), what a
detector module's loading must give, and the registry of named weights kept to registered detectors.
This module is itself a detector module for the tests that name one (`load_detector`)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from common.cli import InputError
from inference.prediction import predict_folder as prediction
from tests.test_detector_interface import Brightness

CPU = torch.device("cpu")


def load_detector(paths, weights, device, precision="f32"):
    """This module as a detector module (inference/detectors/options.py DETECTORS): a Brightness
    detector per file, its model named by the file, weighted as given."""
    detector = Brightness()
    detector.models = [
        SimpleNamespace(name=Path(p).name, weight=w, path=Path(p)) for p, w in zip(paths, weights, strict=True)
    ]
    return detector


def test_models_name_their_detector_on_the_command_line_and_in_an_ensemble_file(tmp_path, monkeypatch):
    """`--models NAME:FILE` and an ensemble member's `detector: NAME` read FILE with that detector's
    module; the project's checkpoints beside them go to the winner's recipe; the ensemble keeps the
    models in their given order with their weights; an unknown name is one line naming where it was
    given and the detectors there are."""
    from inference.detectors import options
    from tests.conftest import save_tiny_checkpoint

    monkeypatch.setitem(options.DETECTORS, "brightness", "tests.test_detector_options")
    ours = save_tiny_checkpoint(tmp_path / "ours.pt")
    theirs = tmp_path / "theirs.bin"
    theirs.write_bytes(b"their format")
    args = prediction.parse_args(
        ["--test-dir", str(tmp_path), "--models", f"brightness:{theirs}", str(ours), "--runtime", "torch"]
    )
    ensemble = options.load_detectors(args, CPU)
    assert [m.name for m in ensemble.models] == ["theirs.bin", "ours.pt"]
    assert [type(d).__name__ for d in ensemble.detectors] == ["WinnerRecipe", "Brightness"]
    assert [m.weight for m in ensemble.models] == pytest.approx([0.5, 0.5])
    spec = tmp_path / "ensemble.yaml"
    spec.write_text(
        "members:\n  - {checkpoint: ours.pt, weight: 3}\n  - {checkpoint: theirs.bin, detector: brightness}\n"
    )
    args = prediction.parse_args(["--test-dir", str(tmp_path), "--ensemble", str(spec), "--runtime", "torch"])
    ensemble = options.load_detectors(args, CPU)
    assert [(m.name, m.weight) for m in ensemble.models] == [("ours.pt", 0.75), ("theirs.bin", 0.25)]
    assert ensemble.models[1].path == theirs, "a member's path is the file's, relative to the ensemble file"
    args = prediction.parse_args(["--test-dir", str(tmp_path), "--models", f"sbx:{theirs}"])
    with pytest.raises(
        InputError,
        match=rf"--models sbx:{theirs}: no detector is named 'sbx'; the detectors are dfdc-winner, .*brightness",
    ):
        options.load_detectors(args, CPU)
    spec.write_text("members:\n  - {checkpoint: theirs.bin, detector: 5}\n")
    with pytest.raises(ValueError, match=r"ensemble.yaml: member 0's `detector` 5 is not a detector's name"):
        options.load_detectors(prediction.parse_args(["--test-dir", str(tmp_path), "--ensemble", str(spec)]), CPU)
    colon = save_tiny_checkpoint(tmp_path / "brightness:x.pt")
    args = prediction.parse_args(["--test-dir", str(tmp_path), "--models", str(colon), "--runtime", "torch"])
    assert [type(d).__name__ for d in options.load_detectors(args, CPU).detectors] == ["WinnerRecipe"], (
        "a file whose name has a colon is the project's checkpoint"
    )


def _broken_loader(kind: str):
    def load_detector(paths, weights, device, precision="f32"):
        if kind == "raises":
            raise RuntimeError("a bug in the detector's loading")
        detector = Brightness()
        detector.models = []
        return detector

    return load_detector


@pytest.mark.parametrize(
    "kind, message",
    [
        ("raises", r"theirs.bin: the broken detector could not load it \(a bug in the detector's loading\)"),
        ("no models", r"theirs.bin: the broken detector gave 0 models for 1 files"),
    ],
)
def test_a_detector_module_that_fails_to_load_is_one_line_naming_the_detector_and_files(
    tmp_path, monkeypatch, kind, message
):
    import sys
    import types

    from inference.detectors import options

    module = types.ModuleType("broken_detector_module")
    module.load_detector = _broken_loader(kind)
    monkeypatch.setitem(sys.modules, "broken_detector_module", module)
    monkeypatch.setitem(options.DETECTORS, "broken", "broken_detector_module")
    args = prediction.parse_args(["--test-dir", str(tmp_path), "--models", f"broken:{tmp_path / 'theirs.bin'}"])
    with pytest.raises(InputError, match=message):
        options.load_detectors(args, CPU)


def test_every_named_weight_set_is_read_by_a_registered_detector_of_inference_detectors():
    """The weights registry names its sets' detectors, DETECTORS names their modules by strings that
    no import check sees: each named detector is registered, and each module is a detector module
    of inference/detectors/ with a load_detector."""
    import importlib

    from inference.detectors.options import DETECTORS, detector_names
    from inference.models.named_weights import ENSEMBLES

    assert {ensemble.detector for ensemble in ENSEMBLES.values()} <= set(detector_names())
    for name, module in DETECTORS.items():
        assert module.startswith("inference.detectors."), name
        assert callable(importlib.import_module(module).load_detector), name


def test_a_detector_prefix_in_another_case_is_named_not_taken_for_a_missing_file(tmp_path):
    from inference.detectors import options

    args = prediction.parse_args(["--test-dir", str(tmp_path), "--models", f"GEND:{tmp_path / 'f'}"])
    with pytest.raises(InputError, match="no detector is named 'GEND'"):
        options.load_detectors(args, CPU)


def test_options_that_other_detectors_do_not_take_are_said_to_be_the_projects_only(tmp_path, caplog):
    import logging

    from inference.detectors.options import warn_of_project_only_options

    args = prediction.parse_args(["--test-dir", str(tmp_path), "--models", "x.pt", "--tta", "--frames", "8"])
    with caplog.at_level(logging.WARNING):
        warn_of_project_only_options(args, ["gend", "sbi"])
        warn_of_project_only_options(args, [])  # the project's models alone: nothing to say
    assert caplog.messages == [
        "--tta and --frames 8: for the project's models only; gend, sbi read 32 frames and score without flips, "
        "as their authors' code does"
    ]
