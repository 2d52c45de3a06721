"""GenD's detector (inference/detectors/gend.py) through the interface: predict and detect score with it
alone, a video is the mean of its frames' p_fake, a video without a face gets the run's default
score; a model file that is not GenD's (cut short, wrong keys or shapes, NaN, not safetensors, a
config of another head) is one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.cli import InputError
from common.video_io import VideoWriter
from inference.detectors import gend, gend_model
from inference.detectors.gend_crops import clip_input
from inference.pipeline.detector import Ensemble, Run
from inference.pipeline.faces import VideoFaces, inference_detector
from inference.prediction import predict_folder as prediction
from inference.serving import detection
from inference.serving.verdict_options import VerdictRule
from preprocess.demo_world.identities import builtin_photos
from tests.gend_files import PREFIX, gend_p_fake, random_state, write_model
from tests.test_media_limits import cut_video  # noqa: F401 (a fixture)

CPU = torch.device("cpu")

# predict, detect and the authors' steps over the same clips: each frame through MTCNN once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A short clip of a face, and one of a grey wall."""
    folder = tmp_path_factory.mktemp("videos")
    photo = builtin_photos()["astronaut"]
    for name, frame in (("face.mp4", photo), ("wall.mp4", np.full_like(photo, 128))):
        with VideoWriter(folder / name, fps=25, width=512, height=512, crf=16) as writer:
            for shift in range(5):
                writer.write(np.roll(frame, 3 * shift, axis=1))
    return folder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    state = random_state()
    return write_model(tmp_path_factory.mktemp("gend") / "model.safetensors", state), state


def _expected(path: Path, state) -> tuple[float, list[int]]:
    faces = gend.GEND_FACES.read(path, inference_detector(0.5, CPU), None)
    p = gend_p_fake(state, torch.from_numpy(np.stack([clip_input(crop) for crop in faces.crops])))
    return float(p.mean()), faces.face_frames


def test_the_model_loads_with_its_name_weight_encoder_and_input_size(model_file):
    path, _ = model_file
    detector = gend.load_detector([path, path], [1.0, 0.5], CPU)
    assert gend.NAME == detector.name == "gend" and detector.source == gend.GEND_FACES
    assert [(m.name, m.weight, m.encoder, m.input_size) for m in detector.models] == [
        ("model.safetensors", 1.0, "vit_large_patch14_clip_quickgelu_224", 224),
        ("model.safetensors", 0.5, "vit_large_patch14_clip_quickgelu_224", 224),
    ]
    assert hash(gend.GEND_FACES) == hash(gend.FaceFrames()) and gend.FaceFrames() == gend.GEND_FACES
    with pytest.raises(InputError, match="2 model files but 1 weights"):
        gend.load_detector([path, path], [1.0], CPU)


def test_gend_scores_through_predict_as_the_mean_of_its_frames(folder, model_file):
    path, state = model_file
    args = prediction.parse_args(["--test-dir", str(folder), "--models", "unused.pt", "--default-score", "0.25"])
    scores, errors, details = prediction.predict(args, Ensemble([gend.load_detector([path], [1.0], CPU)]), CPU)
    assert sorted(scores) == ["face.mp4", "wall.mp4"]
    [error] = errors  # a video without a face, as for the project's read: an error row and the default score
    assert (
        error["filename"] == "wall.mp4" and "no face found in" in error["reason"] and "GenD's read" in error["reason"]
    )
    expected, frames = _expected(folder / "face.mp4", state)
    assert frames == [0, 1, 2, 3, 4], "every frame of a 5-frame clip has the face"
    assert scores["face.mp4"] == pytest.approx(expected, abs=1e-5)
    assert scores["wall.mp4"] == 0.25, "no face: the run's default score"
    row = next(d for d in details if d["filename"] == "face.mp4")
    assert row["model_scores"] == {"model.safetensors": pytest.approx(expected, abs=1e-5)}
    assert np.mean(row["face_scores"]) == pytest.approx(expected, abs=1e-4)


def test_gend_judges_through_detect(folder, model_file):
    path, state = model_file
    args = detection.parse_args([str(folder / "face.mp4"), "--models", "unused.pt"])
    args.detector_scale, args.strategy = 0.5, "confident"  # what resolve_scoring fills in
    ensemble = Ensemble([gend.load_detector([path], [1.0], CPU)])
    document = detection.examine(
        folder / "face.mp4", inference_detector(0.5, CPU), ensemble, args, CPU, None, VerdictRule(None, None, 0.5)
    )
    assert document["error"] is None
    assert document["score"] == pytest.approx(_expected(folder / "face.mp4", state)[0], abs=1e-4)
    assert document["aggregation"]["strategy"] == "mean"
    assert [m["name"] for m in document["models"]] == ["model.safetensors"]
    assert sum(bool(frame["faces"]) for frame in document["per_frame"]) == 5


def test_a_video_without_a_face_is_no_face_found_after_the_frames_tried(folder, model_file, caplog):
    """GenD's read of a faceless video tries at most max_tried frames in the farthest-first order and
    says so; an empty read (a view beside another detector's) scores the run's default."""
    from inference.pipeline.faces import NoFaceError

    with pytest.raises(NoFaceError, match=r"wall.mp4: no face found in 3 frames tried \(GenD's read\)"):
        gend.FaceFrames(frames=4, max_tried=3).read(folder / "wall.mp4", inference_detector(0.5, CPU), None)
    detector = gend.load_detector([model_file[0]], [1.0], CPU)
    [result] = Ensemble([detector]).score([VideoFaces(folder / "wall.mp4", [])], Run(CPU, default_score=0.3))
    assert result.score == 0.3 and result.face_scores == []


def _state_with(changes: dict):
    """A one-layer model's tensors with `changes` (None: the key left out)."""
    state = random_state(layers=1)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    return state


HOSTILE = {
    "a missing layer part": (
        _state_with({PREFIX + "encoder.layers.0.mlp.fc1.bias": None}),
        "missing feature_extractor.vision_model.encoder.layers.0.mlp.fc1.bias",
    ),
    "a key of another model": (_state_with({"backbone.conv1.weight": torch.zeros(3)}), "unexpected backbone.conv1"),
    "a head of three classes": (
        _state_with({"model.linear.weight": torch.zeros(3, 128)}),
        r"model.linear.weight \(3, 128\) vs \(2, 128\)",
    ),
    "a key of another width": (
        _state_with({PREFIX + "encoder.layers.0.self_attn.k_proj.weight": torch.zeros(128, 64)}),
        r"k_proj.weight \(128, 64\) vs \(128, 128\)",
    ),
    "a NaN": (
        _state_with({PREFIX + "post_layernorm.bias": torch.full((128,), float("nan"))}),
        "NaN or infinite: feature_extractor.vision_model.post_layernorm.bias",
    ),
    "an MLP of the wrong width": (
        _state_with({PREFIX + "encoder.layers.0.mlp.fc2.weight": torch.zeros(128, 256)}),
        r"encoder.layers.0.mlp.fc2.weight \(128, 256\) vs \(128, 512\)",
    ),
    "positions of another image size": (
        _state_with({PREFIX + "embeddings.position_embedding.weight": torch.zeros(50, 128)}),
        "not a CLIP ViT's at 224 px",
    ),
    "integers": (_state_with({"model.linear.bias": torch.zeros(2, dtype=torch.int64)}), "not floating point"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_file_that_is_not_gends_is_one_line_naming_it(tmp_path, case):
    state, message = HOSTILE[case]
    path = write_model(tmp_path / "model.safetensors", state)
    with pytest.raises(InputError, match=message) as caught:
        gend.load_detector([path], [1.0], CPU)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_cut_or_foreign_file_is_one_line_naming_it(tmp_path, model_file):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(model_file[0].read_bytes()[:5000])
    pickle = tmp_path / "model.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, pickle)
    for path in (cut, pickle, tmp_path / "absent.safetensors"):
        with pytest.raises(InputError) as caught:
            gend.load_detector([path], [1.0], CPU)
        assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_a_config_beside_the_file_says_the_head(tmp_path, model_file):
    path, state = model_file
    folder = tmp_path / "snapshot"
    copy = write_model(folder / "model.safetensors", state)
    pixels = torch.from_numpy(np.stack([clip_input(builtin_photos()["astronaut"][100:300, 150:350])]))
    config = {"architectures": ["GenD"], "backbone": "openai/clip-vit-large-patch14", "head": "LinearNorm"}
    for head in ("LinearNorm", "linear"):
        (folder / "config.json").write_text(json.dumps({**config, "head": head}))
        [model] = gend.load_detector([copy], [1.0], CPU).models
        with torch.inference_mode():
            ours = torch.softmax(model(pixels), 1)[:, 1]
        assert model.network.normalise == (head == "LinearNorm")
        if head == "LinearNorm":
            assert float(ours) == pytest.approx(float(gend_p_fake(state, pixels)), abs=1e-4)
    (folder / "config.json").write_text(json.dumps({"backbone": "openai/clip-vit-large-patch14"}))
    assert not gend_model.head_normalises(folder / "model.safetensors"), "no head named: their default, linear"
    for changed, message in (({"head": "MLP"}, "head 'MLP' is none of GenD's"), ({"backbone": "dinov2"}, "not a CLIP")):
        (folder / "config.json").write_text(json.dumps({**config, **changed}))
        with pytest.raises(InputError, match=message):
            gend.load_detector([copy], [1.0], CPU)


def test_detect_takes_gend_by_name_beside_the_projects_checkpoint(tmp_path, capsys):
    """`--models gend:FILE` on the command line, beside a checkpoint of the project's: one document
    with both models, each naming its detector, the score their weighted mean."""
    from PIL import Image

    from tests.conftest import save_tiny_checkpoint

    photo = tmp_path / "face.png"
    Image.fromarray(builtin_photos()["astronaut"]).save(photo)
    ours = save_tiny_checkpoint(tmp_path / "ours.pt")
    theirs = write_model(tmp_path / "model.safetensors")
    options = ["--models", f"gend:{theirs}", str(ours), "--json", "--runtime", "torch"]
    assert detection.main([str(photo), *options]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["detector"]) for m in document["models"]] == [
        ("model.safetensors", "gend"),
        ("ours.pt", "dfdc-winner"),
    ]
    assert document["score"] == pytest.approx(np.mean([m["score"] for m in document["models"]]), abs=1e-4)


def test_a_cut_video_is_flagged_and_only_the_frames_looked_at_are_counted(cut_video):  # noqa: F811
    """A container stating 40 frames, cut at 70% of its bytes: the frames that do not decode are
    asked for but not looked at (the read is partial, said as the project's read says it), and the
    frames counted are those whose faces were looked at, not the rest of their chunk."""
    faces = gend.FaceFrames().read(cut_video, inference_detector(0.5, CPU), None)
    assert faces.partial_reason is not None and faces.partial_reason.startswith("decoded ")
    assert set(faces.frame_indices) < set(faces.frames_requested), "undecodable frames asked for, not looked at"
    assert faces.face_frames == faces.frame_indices, "a face in every frame looked at: none counted without"
    assert len(faces.crops) == len(faces.frame_indices) < 32
