"""Fast mode held to what it promises, on real clips: each frame's faces where exact mode finds
them (boxes matched by IoU), each face's score close to exact mode's, and the video's within 0.05,
scored by a checkpoint that tells the clips apart.

Issue 28: the fast-mode tests compared video scores of a random ResNet-18 whose scores barely
differ between videos, so that shifting every seeded box by 40% of its width still passed them.
Measured with that shift injected into `detect_seeded_frames` (the seeded frames' boxes moved right
by 0.4 of their width): the matched faces' IoU fell to 0.34-0.40, the 90th percentile of the
per-face score differences rose to 0.35-0.39 and the REAL clip's score moved by 0.15; fast mode as
it is: IoU at least 0.61 (a face cut by the frame's edge) and 0.8 or more for 92-100% of faces, per-face
differences 0.013 / 0.10 at the 90th percentile, videos within 0.018.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from inference.benchmarks.sharp_checkpoint import pooled_features, sharpened_head
from inference.models.ensemble import face_probabilities, load_member
from inference.pipeline.aggregate import confident
from inference.pipeline.faces import extract_faces, inference_detector, sample_frames
from preprocess.faces.tracks import box_iou
from tests.conftest import shared_data
from training.models.zoo import create_model

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

# (clip, label): a FaceForensics++ original (landscape, one face) and a DFDC fake (portrait, a small
# face cut by the frame's left edge): the checkpoint below scores them far apart
CLIPS = (("dfdc_train_part_0", "634.mp4", 0), ("dfdc_train_part_10", "yhffcuhhjy.mp4", 1))
CPU = torch.device("cpu")


def matched_faces(exact, fast) -> tuple[list[tuple[int, int, float]], int]:
    """Pairs (exact face, fast face, IoU) frame by frame, each face in one pair at most (the pairing
    of most overlap), and how many faces of either mode are left without one."""
    pairs, unmatched = [], 0
    exact_start = np.cumsum([0, *map(len, exact.boxes_by_frame())])
    fast_start = np.cumsum([0, *map(len, fast.boxes_by_frame())])
    for frame, (mine, theirs) in enumerate(zip(exact.boxes_by_frame(), fast.boxes_by_frame(), strict=True)):
        unmatched += abs(len(mine) - len(theirs))
        if mine and theirs:
            overlaps = np.array([[box_iou(a, b) for b in theirs] for a in mine])
            for i, j in zip(*linear_sum_assignment(overlaps, maximize=True), strict=True):
                pairs.append((exact_start[frame] + i, fast_start[frame] + j, overlaps[i, j]))
    return pairs, unmatched


@pytest.fixture(scope="module")
def clips():
    """{clip: (exact mode's faces, fast mode's faces)}, both with the recall boost, as predict runs them."""
    exact, fast = inference_detector(0.5, CPU), inference_detector(0.5, CPU, fast=True)
    found = {}
    for part, name, _ in CLIPS:
        path = shared_data("dfdc_mini", part, name)
        found[name] = (extract_faces(path, exact, recall=True), extract_faces(path, fast, recall=True, sparse=True))
    return found


@pytest.fixture(scope="module")
def separating_member(clips, tmp_path_factory):
    """A ResNet-18 at 96 px (random encoder, seeded) whose head is fitted to the clips' labels on exact
    mode's faces (a regularised discriminant) and spread to logits of +-3: each clip's faces score
    apart from the other's, and a face cut elsewhere scores differently."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("separating") / "r18.pt"
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    torch.save(
        {"encoder": "resnet18", "input_size": 96, **imagenet, "state_dict": create_model("resnet18").state_dict()}, path
    )
    member = load_member(path, CPU)
    crops = [crop for _, name, _ in CLIPS for crop in clips[name][0].crops]
    labels = torch.tensor([label for _, name, label in CLIPS for _ in clips[name][0].crops], dtype=torch.float64)
    features = pooled_features(member, crops).double()
    centred = features - features.mean(0)
    covariance = centred.T @ centred / len(features) + 1e-2 * torch.eye(features.shape[1], dtype=torch.float64)
    direction = torch.linalg.solve(covariance, features[labels == 1].mean(0) - features[labels == 0].mean(0))
    bias = -(direction @ features.mean(0)).view(1)
    weight, bias = sharpened_head(direction.float()[None], bias.float(), features.float(), 3.0)
    member.model.fc.weight.data.copy_(weight)
    member.model.fc.bias.data.copy_(bias)
    return member


@pytest.mark.shared_data
def test_the_checkpoint_tells_the_clips_apart(clips, separating_member):
    real, fake = (confident(face_probabilities(separating_member, clips[name][0].crops, CPU)) for _, name, _ in CLIPS)
    assert fake - real > 0.4, (real, fake)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", [name for _, name, _ in CLIPS])
def test_fast_mode_finds_exact_modes_faces_and_scores_them_alike(clips, separating_member, name):
    exact, fast = clips[name]
    pairs, unmatched = matched_faces(exact, fast)
    assert unmatched <= max(2, len(exact.crops) // 10), "a face more or less in a few frames at most"
    overlaps = np.array([iou for _, _, iou in pairs])
    assert overlaps.min() >= 0.5 and np.mean(overlaps >= 0.8) >= 0.85, np.sort(overlaps)[:10]
    exact_scores = face_probabilities(separating_member, exact.crops, CPU)
    fast_scores = face_probabilities(separating_member, fast.crops, CPU)
    differences = np.array([abs(exact_scores[i] - fast_scores[j]) for i, j, _ in pairs])
    assert np.percentile(differences, 90) <= 0.15, np.sort(differences)[-10:]
    assert abs(confident(fast_scores) - confident(exact_scores)) <= 0.05


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["634_660.mp4", "yhffcuhhjy.mp4"])
def test_fast_modes_reader_gives_exact_modes_frames(name):
    part = "dfdc_train_part_10" if name == "yhffcuhhjy.mp4" else "dfdc_train_part_0"
    path = shared_data("dfdc_mini", part, name)
    ordinary, sparse = sample_frames(path, 32), sample_frames(path, 32, sparse=True)
    assert sparse.requested == ordinary.requested and sorted(sparse.decoded) == sorted(ordinary.decoded)
    for index, frame in ordinary.decoded.items():
        np.testing.assert_array_equal(sparse.decoded[index], frame, err_msg=f"{name}, frame {index}")
