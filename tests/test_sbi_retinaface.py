"""SBI with its authors' face finder placed by the user (inference/detectors/sbi_retinaface.py):
RetinaFace R50 as their `retinaface_pytorch` package runs it (installed with --no-deps; the tests
that run it skip where it is absent), its weights in the release zip's format, random here: the
source's read is their extract_frames on the package's own `predict_jsons`. Its absence, and a file
that is not its weights, stop the run at once with one line."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.cli import InputError
from common.video_io import VideoWriter
from inference.detectors import sbi, sbi_retinaface
from preprocess.demo_world.identities import builtin_photos
from tests import sbi_authors as authors
from tests.test_sbi_detector import _calibrated_authors_state

CPU = torch.device("cpu")
FINDER_SIZE = 256  # theirs is 2048 (every frame upscaled to it): the same code, cheap on a CPU


@pytest.fixture
def finder_weights(tmp_path) -> Path:
    """Random RetinaFace R50 weights in the release zip's format (one .pth inside), whose stride-32
    level finds boxes of the 256-px anchor everywhere (the others nowhere), so that NMS and SBI's
    rules have boxes to keep and drop."""
    network = pytest.importorskip("retinaface.predict_single").Model(max_size=FINDER_SIZE).model
    torch.manual_seed(0)
    state = network.state_dict()
    for level in range(3):
        bias = torch.full_like(state[f"ClassHead.{level}.conv1x1.bias"], 0.0)
        bias[0::2] = 4.0  # background
        if level == 2:
            bias[:2] = torch.tensor([-4.0, 4.0])  # the first anchor: a face
        state[f"ClassHead.{level}.conv1x1.bias"] = bias
    path = tmp_path / "retinaface_resnet50_2020-07-20-f168fae3c.zip"
    torch.save(state, tmp_path / "retinaface.pth")
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(tmp_path / "retinaface.pth", "retinaface_resnet50_2020-07-20/retinaface.pth")
    yield path
    sbi_retinaface.forget()


def test_their_finder_gives_the_boxes_of_their_extract_frames(finder_weights, tmp_path):
    video = tmp_path / "face.mp4"
    with VideoWriter(video, fps=25, width=512, height=512, crf=16) as writer:
        for level in (1.0, 0.8, 0.6):
            writer.write((builtin_photos()["astronaut"] * level).astype(np.uint8))
    checkpoint = tmp_path / "FFc23.tar"
    torch.save(authors.authors_checkpoint(_calibrated_authors_state(torch.rand(2, 3, 64, 64))), checkpoint)
    detector = sbi.load_detector([checkpoint], [1.0], CPU, retinaface=finder_weights)
    assert detector.source.retinaface == str(finder_weights)
    source = sbi.SbiFaces(retinaface=str(finder_weights), finder_size=FINDER_SIZE)
    faces = source.read(video, SimpleNamespace(device=CPU), SimpleNamespace())

    theirs = sbi_retinaface.retinaface(finder_weights, CPU, FINDER_SIZE)  # the package's Model, loaded once
    boxes, crops, face_frames = [], [], []
    for index, frame in authors.authors_frames(video).items():
        kept, cropped = authors.authors_extract_frame(frame, theirs.predict_jsons(frame))
        boxes, crops, face_frames = boxes + kept, crops + cropped, face_frames + [index] * len(cropped)
    assert faces.frame_indices == [0, 1, 2] and faces.face_frames == face_frames and faces.boxes == boxes
    assert all(np.array_equal(got, want) for got, want in zip(faces.crops, crops, strict=True))
    assert len(set(face_frames)) == 3 and len(crops) > 3, "several boxes a frame kept"
    assert any(min(box) < 0 for box in boxes), "boxes as their finder gives them: unclipped"


def test_a_file_that_is_not_its_weights_is_one_line_naming_it(finder_weights, tmp_path):
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as archive:
        archive.writestr("weights.pth", b"not a state dict")
    wrong = tmp_path / "wrong.pth"
    torch.save({"body.conv1.weight": torch.zeros(1)}, wrong)
    for path, problem in ((junk, "no RetinaFace weights"), (wrong, "does not fit the model")):
        with pytest.raises(InputError) as refused:
            sbi_retinaface.retinaface(path, CPU)
        assert str(refused.value).startswith(str(path)) and problem in str(refused.value)
        assert "\n" not in str(refused.value)


def test_without_its_package_the_run_stops_at_once_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "retinaface.predict_single", None)  # as where it is not installed
    checkpoint = tmp_path / "FFraw.tar"
    with pytest.raises(InputError, match="pip install --no-deps retinaface_pytorch==0.0.8"):
        sbi.load_detector([checkpoint], [1.0], CPU, retinaface=tmp_path / "retinaface.zip")
