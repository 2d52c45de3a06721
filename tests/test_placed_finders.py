"""The authors' face finders where the user has placed their files beside the checkpoints: used when
what runs them loads them; otherwise the run's MTCNN, and a warning naming the file and why."""

from __future__ import annotations

import logging

import torch

from common.cli import InputError
from inference.detectors.placed_finders import placed_finder
from tests.test_sbi_retinaface import finder_weights  # noqa: F401  (a fixture)

CPU = torch.device("cpu")


def test_a_placed_finder_is_the_first_usable_file_beside_the_checkpoints(tmp_path, caplog):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    checkpoints = [first / "model.pth", second / "model.pth"]
    assert placed_finder(checkpoints, ["finder.dat"], "a finder", lambda path: None) is None, "nothing placed"
    (second / "finder.dat").write_bytes(b"weights")
    assert placed_finder(checkpoints, ["finder.dat"], "a finder", lambda path: None) == second / "finder.dat"

    def refuse(path):
        raise InputError(f"{path}: needs its package (pip install it)")

    with caplog.at_level(logging.WARNING):
        assert placed_finder(checkpoints, ["finder.dat"], "a finder", refuse) is None
    assert f"{second / 'finder.dat'} was placed but is not used" in caplog.text and "pip install it" in caplog.text


def test_sbi_and_deepfakebench_fall_back_to_mtcnn_when_their_placed_finder_cannot_run(tmp_path, caplog, monkeypatch):
    """A RetinaFace zip beside SBI's checkpoint that its package (or the file) cannot run, and a dlib
    predictor beside DeepfakeBench's without dlib (or not a predictor): warned of, MTCNN finds the
    faces. (The checkpoints themselves are not read here: their loading is tested with each detector.)"""
    from types import SimpleNamespace

    from inference.detectors import deepfakebench, sbi

    loaded = SimpleNamespace(name="model", weight=1.0, encoder="e", input_size=8)
    monkeypatch.setattr(sbi, "load_model", lambda *args: loaded)
    monkeypatch.setattr(deepfakebench, "load_model", lambda *args: loaded)
    (tmp_path / "retinaface_resnet50_2020-07-20-f168fae3c.zip").write_bytes(b"not RetinaFace's weights")
    (tmp_path / "shape_predictor_81_face_landmarks.dat").write_bytes(b"not a predictor")
    with caplog.at_level(logging.WARNING):
        found = sbi.load_detector([tmp_path / "FFc23.tar"], [1.0], CPU)
        bench = deepfakebench.load_detector([tmp_path / "xception_best.pth"], [1.0], CPU)
    assert found.source.retinaface is None and bench.source.dlib_predictor is None
    assert "retinaface_resnet50_2020-07-20-f168fae3c.zip was placed but is not used" in caplog.text
    assert "shape_predictor_81_face_landmarks.dat was placed but is not used" in caplog.text


def test_a_placed_retinaface_finds_sbis_faces_where_its_package_is_installed(finder_weights, tmp_path):  # noqa: F811
    """tests/test_sbi_retinaface.py's random RetinaFace zip, under the release's name beside the
    checkpoint (skipped without retinaface_pytorch)."""
    from inference.detectors import sbi
    from tests import sbi_authors

    checkpoint = tmp_path / "FFc23.tar"
    torch.save(sbi_authors.authors_checkpoint(sbi_authors.random_authors_state(0)), checkpoint)
    assert sbi.load_detector([checkpoint], [1.0], CPU).source.retinaface == str(finder_weights)
