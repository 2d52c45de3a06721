"""Face identities from the built-in photos and from a folder of the user's photos."""

from __future__ import annotations

import numpy as np
import pytest

from preprocess.demo_world.identities import load_identities, photos_from_dir
from preprocess.faces.face_detector import INFERENCE_THRESHOLDS, FaceDetector
from tests.conftest import shared_data

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


def _single_face_everywhere(identities) -> None:
    detector = FaceDetector(INFERENCE_THRESHOLDS, scale=1.0, device="cpu")
    for identity in identities:
        faces = detector.detect(identity.image)
        assert len(faces) == 1, f"{identity.name}: {len(faces)} faces"
        assert np.abs(faces.boxes[0] - identity.box).max() < 0.1 * identity.face_height


def test_builtin_photos_give_two_identities_with_one_face_each():
    identities = load_identities(device="cpu")
    assert [identity.name for identity in identities] == ["astronaut", "grace_hopper"]
    _single_face_everywhere(identities)


@pytest.mark.shared_data
def test_group_photos_give_one_identity_per_face():
    faces_dir = shared_data("faces")
    identities = load_identities(faces_dir, device="cpu")
    names = [identity.name for identity in identities]
    assert {f"person_{c}" for c in "abcdefg"} <= set(names)
    assert sum(name.startswith("group_") for name in names) >= 3
    assert sum(name.startswith("two_people_") for name in names) == 2
    _single_face_everywhere(identities)


def test_a_folder_without_photos_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no photos here")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        photos_from_dir(tmp_path)


def test_a_folder_without_faces_is_a_clear_error(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    with pytest.raises(ValueError, match="no usable face"):
        load_identities(tmp_path, device="cpu")
