"""GenD's SCRFD wrapper (yermandy/GenD @ e03532d, src/retinaface.py, as /work/notes/issue30_spec.md
section 3.2 describes it) re-derived for the tests one anchor and one pair of boxes at a time, in
float32 scalars where the authors' NumPy works in float32 arrays; synthetic network outputs of
det_10g.onnx's signature; and a tiny ONNX graph with that signature for the onnxruntime path."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SIZE = 640
STRIDES = (8, 16, 32)
# det_10g.onnx's input and output names (insightface buffalo_l), outputs grouped scores, boxes, keypoints
INPUT_NAME = "input.1"
OUTPUT_NAMES = ("448", "471", "494", "451", "474", "497", "454", "477", "500")


def anchors(stride: int) -> int:
    """Anchors at one stride: (640 / stride)^2 locations, two each."""
    return (SIZE // stride) ** 2 * 2


def authors_letterbox(frame_bgr: np.ndarray) -> tuple[np.ndarray, float]:
    """Their `detect`'s resize into the 640 x 640 input (input_size (640, 640), so model_ratio 1.0)."""
    im_ratio = float(frame_bgr.shape[0]) / frame_bgr.shape[1]
    if im_ratio > 1.0:
        new_height = SIZE
        new_width = int(new_height / im_ratio)
    else:
        new_width = SIZE
        new_height = int(new_width * im_ratio)
    det_scale = float(new_height) / frame_bgr.shape[0]
    det_img = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    det_img[:new_height, :new_width, :] = cv2.resize(frame_bgr, (new_width, new_height))
    return det_img, det_scale


def authors_blob(det_img_bgr: np.ndarray) -> np.ndarray:
    """Their `forward`'s network input, by OpenCV as theirs."""
    return cv2.dnn.blobFromImage(det_img_bgr, 1.0 / 128.0, (SIZE, SIZE), (127.5, 127.5, 127.5), swapRB=True)


def authors_detections(
    outputs, det_scale: float, threshold: float = 0.1, nms_thresh: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """det (N, 5) and kps (N, 5, 2) as their `detect` returns them, from the 9 outputs. Candidates
    of equal score are ranked by the later first (NumPy's argsort reversed, where the sort keeps
    ties in place): the tests give equal scores only to boxes that do not overlap."""
    f32 = np.float32
    candidates = []  # (score, box, points, index)
    for level, stride in enumerate(STRIDES):
        width = SIZE // stride
        scores, distances, offsets = (np.asarray(outputs[level + k * 3], np.float32) for k in range(3))
        for anchor in range(anchors(stride)):
            score = scores.reshape(-1)[anchor]
            if not score >= f32(threshold):  # float32 array >= Python float compares in float32
                continue
            row, column = divmod(anchor // 2, width)
            cx, cy, s = f32(column * stride), f32(row * stride), f32(stride)
            d, o = distances.reshape(-1, 4)[anchor], offsets.reshape(-1, 10)[anchor]
            box = [cx - d[0] * s, cy - d[1] * s, cx + d[2] * s, cy + d[3] * s]
            points = [[cx + o[2 * j] * s, cy + o[2 * j + 1] * s] for j in range(5)]
            scale = f32(det_scale)  # float32 array / Python float divides in float32
            candidates.append(
                (score, [v / scale for v in box], [[x / scale, y / scale] for x, y in points], len(candidates))
            )
    candidates.sort(key=lambda c: (-c[0], -c[3]))
    kept = []
    for candidate in candidates:
        if all(overlap(candidate[1], other[1]) <= f32(nms_thresh) for other in kept):
            kept.append(candidate)
    det = np.array([[*c[1], c[0]] for c in kept], np.float32).reshape(-1, 5)
    kps = np.array([c[2] for c in kept], np.float32).reshape(-1, 5, 2)
    return det, kps


def overlap(a, b) -> np.float32:
    """Their NMS's overlap of two boxes: +1 in the areas and the intersection, in float32."""
    one, zero = np.float32(1), np.float32(0)
    area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)
    area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
    w = max(zero, min(a[2], b[2]) - max(a[0], b[0]) + one)
    h = max(zero, min(a[3], b[3]) - max(a[1], b[1]) + one)
    return (w * h) / (area_a + area_b - w * h)


@dataclass
class Face:
    """One anchor's output: its stride, location (row, column), anchor (0, 1), score, box distances
    (left, top, right, bottom, in strides) and keypoint offsets (5 x (x, y), in strides)."""

    stride: int
    row: int
    column: int
    anchor: int
    score: float
    distances: tuple[float, float, float, float] = (2.0, 2.5, 2.0, 2.5)
    offsets: list[float] = field(default_factory=lambda: [-0.8, -0.5, 0.8, -0.5, 0.0, 0.2, -0.6, 1.0, 0.6, 1.0])


def synthetic_outputs(faces: list[Face], seed: int = 0, background: float = 0.09) -> list[np.ndarray]:
    """The 9 outputs ((N, 1), (N, 4), (N, 10) per stride, float32, det_10g's shapes at 640 x 640):
    random scores below `background` everywhere (and random distances and offsets), `faces` set."""
    rng = np.random.default_rng(seed)
    scores = [rng.uniform(0, background, (anchors(s), 1)).astype(np.float32) for s in STRIDES]
    boxes = [rng.uniform(0, 4, (anchors(s), 4)).astype(np.float32) for s in STRIDES]
    points = [rng.uniform(-2, 2, (anchors(s), 10)).astype(np.float32) for s in STRIDES]
    for face in faces:
        level = STRIDES.index(face.stride)
        index = (face.row * (SIZE // face.stride) + face.column) * 2 + face.anchor
        scores[level][index] = face.score
        boxes[level][index] = face.distances
        points[level][index] = face.offsets
    return scores + boxes + points


def scrfd_onnx(outputs: list[np.ndarray], channel_weights=(0.3, -0.2, 0.1), **graph) -> bytes:
    """A tiny ONNX model of det_10g's signature (input `input.1`, (1, 3, ?, ?); 9 outputs of its
    names and shapes) returning `outputs`, except that stride 8's scores also get the dot product of
    the input's channel means with `channel_weights`: the network input's letterbox, order of
    channels and normalisation show in the scores. `graph`: `outputs_count` to give fewer outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    count = graph.get("outputs_count", 9)
    nodes = [
        helper.make_node("ReduceMean", [INPUT_NAME], ["channel_means"], axes=[0, 2, 3], keepdims=0),
        helper.make_node("MatMul", ["channel_means", "channel_weights"], ["probe"]),
        helper.make_node("Add", ["base_448", "probe"], [OUTPUT_NAMES[0]]),
    ]
    initializers = [
        numpy_helper.from_array(np.asarray(channel_weights, np.float32).reshape(3, 1), "channel_weights"),
        numpy_helper.from_array(outputs[0], "base_448"),
    ]
    for name, value in zip(OUTPUT_NAMES[1:count], outputs[1:count], strict=True):
        initializers.append(numpy_helper.from_array(value, f"value_{name}"))
        nodes.append(helper.make_node("Identity", [f"value_{name}"], [name]))
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "scrfd_signature",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, "?", "?"])],
            [
                helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape))
                for name, value in zip(OUTPUT_NAMES[:count], outputs[:count], strict=True)
            ],
            initializers,
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
