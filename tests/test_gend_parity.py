"""GenD's pipeline (inference/detectors/gend*.py) against the authors' code (yermandy/GenD @ e03532d),
re-derived here: the frame order of detector.py's `at_least` mode, its `align_face` arithmetic
(template, size S, margins, in the float types NumPy 2 gives them) through the OpenCV calls it
makes on the BGR frame and the PNG the dataset reads back, the slow CLIPImageProcessor's steps with
PIL, and the CLIP vision tower's forward (tests/gend_files.py) against timm's. On the real sample
clips: the same decoded frames (imageio's PyAV plugin, the authors' reader), the same MTCNN
detections, the same crops to the pixel and the same p_fake to 1e-4."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from inference.detectors import gend_crops, gend_model
from inference.detectors.gend import FaceFrames, GenDDetector
from inference.pipeline.detector import Run
from inference.pipeline.faces import inference_detector
from tests.conftest import shared_data
from tests.gend_files import gend_p_fake, random_state, shapes, write_model

# the same clips through MTCNN here and in other modules: each frame once (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)
pytestmark = pytest.mark.usefixtures("remembered_detections")

CPU = torch.device("cpu")
TEMPLATE = [[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def naive_order(count: int, start: int) -> list[int]:
    """Farthest-first: each next index the one whose nearest taken index is farthest, the smaller on ties."""
    chosen, rest = [start], set(range(count)) - {start}
    while rest:
        best = max(rest, key=lambda i: (min(abs(i - c) for c in chosen), -i))
        chosen.append(best)
        rest.remove(best)
    return chosen


@pytest.mark.parametrize("count", [1, 2, 3, 4, 10, 37, 300])
def test_frames_are_tried_in_the_authors_farthest_first_order(count):
    assert gend_crops.farthest_first_order(count) == naive_order(count, count // 2)
    assert gend_crops.farthest_first_order(count, 0) == naive_order(count, 0)
    assert gend_crops.farthest_first_order(count, count - 1) == naive_order(count, count - 1)


def test_the_order_begins_as_the_authors_function_gives_it():
    assert gend_crops.farthest_first_order(300)[:8] == [150, 0, 299, 75, 224, 37, 112, 187]
    assert gend_crops.farthest_first_order(10) == [5, 0, 9, 2, 7, 1, 3, 4, 6, 8]
    assert gend_crops.farthest_first_order(0) == []


def authors_size(landmarks: np.ndarray, scale: float = 1.3) -> int:
    """align_face's S: the mean over the 10 pairs of distance ratios, x scale, rounded half to even,
    float32 throughout (float32 landmarks; a Python float does not promote under NumPy 2)."""
    points = np.float32(landmarks)
    template = np.float32(TEMPLATE)
    ratios = [
        np.float32(np.sqrt(np.sum(np.square(points[i] - points[j]))))
        / np.float32(np.sqrt(np.sum(np.square(template[i] - template[j]))))
        for i in range(5)
        for j in range(i + 1, 5)
    ]
    return int(np.round(np.mean(np.float32(ratios)) * np.float32(scale)))


def authors_target(size: int, scale: float = 1.3) -> np.ndarray:
    """align_face's destination points: float32 array, each step computed with NumPy int64 S in
    float64 and stored back as float32."""
    margin = float(size) * (scale - 1) / 2.0
    target = np.float32(TEMPLATE)
    for step in (lambda v: v * float(size), lambda v: v + margin, lambda v: v * (float(size) / (size + 2 * margin))):
        target = np.float32(step(np.float64(target)))
    return target


def authors_crop(frame_rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """detector.py's crop of a frame it read as BGR, written as PNG, read back by the dataset (PIL, RGB)."""
    size = authors_size(landmarks)
    frame_bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    matrix = cv2.estimateAffinePartial2D(np.float32(landmarks), authors_target(size), method=cv2.LMEDS)[0]
    crop_bgr = cv2.warpAffine(frame_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR)
    ok, png = cv2.imencode(".png", crop_bgr)
    assert ok
    return np.asarray(Image.open(io.BytesIO(png.tobytes())).convert("RGB"))


def _face_landmarks(rng, size: float, at: tuple[float, float]) -> np.ndarray:
    return (np.float32(TEMPLATE) * size + rng.normal(0, size * 0.04, (5, 2)) + at).astype(np.float32)


def test_alignment_size_and_target_are_the_authors_to_the_last_bit():
    rng = np.random.default_rng(0)
    for _ in range(300):
        landmarks = _face_landmarks(rng, rng.uniform(15, 500), rng.uniform(0, 900, 2))
        size = gend_crops.alignment_size(landmarks)
        assert size == authors_size(landmarks)
        target = gend_crops.alignment_target(size)
        assert np.array_equal(target, authors_target(size))
        # what it means: S x (template + 0.15) / 1.3, the template in a square 1.3 times its size
        assert np.allclose(target, size * (np.float64(TEMPLATE) + 0.15) / 1.3, atol=1e-3)
    float32_only = [
        s
        for s in range(20, 400)
        if not np.array_equal(
            gend_crops.alignment_target(s),
            (np.float32(TEMPLATE) * np.float32(s) + np.float32(s * 0.15)) * np.float32(s / (s * 1.3)),
        )
    ]
    assert len(float32_only) > 100, "the float types matter: in float32 alone most targets differ in a bit"


def test_a_crop_is_the_authors_bgr_png_crop_on_a_synthetic_frame():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    for size, at in ((60.0, (100, 80)), (150.0, (520, 250)), (33.3, (-10, -5))):  # the last partly outside
        landmarks = _face_landmarks(rng, size, at)
        ours = gend_crops.align_face(frame, landmarks)
        assert ours.shape == (authors_size(landmarks),) * 2 + (3,)
        assert np.array_equal(ours, authors_crop(frame, landmarks))
    assert gend_crops.align_face(frame, np.zeros((5, 2), np.float32)) is None, "all in one point: no crop"


def authors_clip_input(crop_rgb: np.ndarray) -> np.ndarray:
    """CLIPImageProcessor (slow, transformers 4.56.2) with openai/clip-vit-large-patch14's settings:
    get_resize_output_image_size(default_to_square=False, shortest_edge 224), PIL BICUBIC,
    center_crop 224, rescale in float64 to float32, normalize in float32, channels first."""
    image = Image.fromarray(crop_rgb).convert("RGB")
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short != 224:
        new_short, new_long = 224, int(224 * long / short)
        width, height = (new_short, new_long) if image.size[0] <= image.size[1] else (new_long, new_short)
        image = image.resize((width, height), resample=Image.Resampling.BICUBIC, reducing_gap=None)
    array = np.array(image)
    top, left = (height - 224) // 2, (width - 224) // 2
    array = array[top : top + 224, left : left + 224]
    array = (array.astype(np.float64) * (1 / 255)).astype(np.float32)
    array = (array - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return array.transpose(2, 0, 1)


@pytest.mark.parametrize("shape", [(181, 181), (224, 224), (300, 300), (96, 96), (360, 640), (500, 333), (225, 224)])
def test_clip_input_is_the_slow_clip_processors(shape):
    rng = np.random.default_rng(sum(shape))
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), (0, 0), 2)
    ours = gend_crops.clip_input(smooth)
    assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
    assert np.array_equal(ours, authors_clip_input(smooth))


class RecordingMTCNN:
    """The run's MTCNN, recording each frame it is given and what it found there."""

    def __init__(self, detector):
        self.detector, self.device, self.seen = detector, detector.device, []

    def detect_each(self, frames):
        found = self.detector.detect_each(frames)
        self.seen += list(zip(frames, found, strict=True))
        return found


def authors_frames(path, indices) -> dict[int, np.ndarray]:
    """Frames as imageio's PyAV plugin decodes them (the authors' reader), in one pass."""
    import imageio.v3 as iio

    wanted = set(indices)
    return {i: frame for i, frame in enumerate(iio.imiter(path, plugin="pyav")) if i in wanted}


# 16 of the 32 frames their pipeline takes on the landscape clip: the same arithmetic per frame, half the time
CLIPS = [("dfdc_train_part_0", "004.mp4", 16), ("dfdc_train_part_10", "yhffcuhhjy.mp4", 8)]


@pytest.fixture(scope="module")
def real_reads():
    """GenD's read of two sample clips (the second, portrait, with 8 frames to keep the test short),
    with what its MTCNN saw."""
    reads = []
    for part, name, frames in CLIPS:
        path = shared_data("dfdc_mini", part, name)
        mtcnn = RecordingMTCNN(inference_detector(0.5, CPU))
        faces = FaceFrames(frames=frames, max_tried=4 * frames).read(path, mtcnn, None)
        reads.append((path, frames, faces, mtcnn.seen))
    return reads


@pytest.mark.shared_data
def test_real_clips_give_the_authors_frames_and_crops_to_the_pixel(real_reads):
    import imageio.v3 as iio

    for path, frames, faces, seen in real_reads:
        count = iio.improps(path, plugin="pyav").shape[0]
        order = naive_order(count, count // 2)
        decoded = authors_frames(path, order[: len(seen)])
        expected = []
        for index, (frame, found) in zip(order, seen, strict=False):  # tried in the authors' order
            assert np.array_equal(frame, decoded[index]), f"{path.name}: frame {index} is not the authors'"
            if len(found.boxes) and len(expected) < frames:
                boxes = found.boxes
                areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                largest = int(np.argmax(areas))
                expected.append((index, authors_crop(frame, found.landmarks[largest])))
        expected.sort(key=lambda entry: entry[0])
        assert len(expected) == frames, f"{path.name}: a face in {frames} frames"
        assert faces.face_frames == [index for index, _ in expected]
        assert len(faces.crops) == frames
        for (index, crop), ours in zip(expected, faces.crops, strict=True):
            assert ours.dtype == np.uint8 and ours.shape == crop.shape, index
            assert np.array_equal(ours, crop), f"{path.name}: frame {index}'s crop is not the authors'"
        assert sorted(faces.frame_indices) == faces.frame_indices and set(faces.face_frames) <= set(faces.frame_indices)
        assert 120 < np.mean([crop.shape[0] for crop in faces.crops]) < 400, "S follows a 720p face's size"


@pytest.mark.shared_data
def test_real_crops_score_as_the_authors_model_to_1e_4(real_reads, tmp_path):
    state = random_state()
    detector = GenDDetector([gend_model.load_model(write_model(tmp_path / "model.safetensors", state))])
    for _, _, faces, _ in real_reads:
        [[ours]] = detector.probabilities([faces], Run(CPU, batch_size=5))
        pixels = torch.from_numpy(np.stack([authors_clip_input(crop) for crop in faces.crops]))
        theirs = gend_p_fake(state, pixels).numpy()
        assert np.abs(ours - theirs).max() < 1e-4
        assert theirs.max() - theirs.min() > 0.05, "random weights that tell the crops apart"
        assert detector.model_score(detector.models[0], ours, faces, Run(CPU)) == pytest.approx(theirs.mean(), abs=1e-4)
    # the comparison can fail: q and k swapped in the map, or the head without its normalisation
    swapped = dict(state)
    for n in range(2):
        layer = f"feature_extractor.vision_model.encoder.layers.{n}.self_attn."
        swapped[layer + "q_proj.weight"], swapped[layer + "k_proj.weight"] = (
            state[layer + "k_proj.weight"],
            state[layer + "q_proj.weight"],
        )
    assert np.abs(gend_p_fake(swapped, pixels).numpy() - theirs).max() > 1e-3
    network = detector.models[0].network
    with torch.inference_mode():
        network.normalise = False
        unnormalised = torch.softmax(network(pixels), 1)[:, 1].numpy()
    assert np.abs(unnormalised - theirs).max() > 1e-3


def test_the_full_size_tower_maps_onto_timms_vit_large_clip_with_the_released_parameter_count():
    """Full size (marked as such: on the meta device, no weights): the released file's keys and shapes
    (303,968,258 parameters, 1024 wide, 24 layers, 16 heads) map onto timm's model, shape for shape."""
    state = {k: torch.empty(v, device="meta") for k, v in shapes(1024, 24, 4096, 14, 224, 768).items()}
    assert sum(v.numel() for v in state.values()) == 303_968_258
    size = gend_model.tower_size(state, "model.safetensors")
    assert (size.width, size.layers, size.heads, size.mlp, size.patch, size.image) == (1024, 24, 16, 4096, 14, 224)
    tower = gend_model.build_tower(size)
    mapped = gend_model.timm_state(state, size.layers)
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    assert math.isclose(sum(p.numel() for p in tower.parameters()), 303_968_258 - 768 * 1024 - 2 * 1024 - 2)
