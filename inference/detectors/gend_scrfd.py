"""GenD's own face finder, where the user has placed it: SCRFD-10GF, insightface's `det_10g.onnx`
(the buffalo_l pack; non-commercial research use only), run by onnxruntime as GenD's wrapper runs it
(yermandy/GenD @ e03532d, src/retinaface.py with `prepare_model(det_thres=0.1)`, the README's
command). onnxruntime is not a requirement of the project (`pip install onnxruntime`); without it, or
with a file it cannot load, GenD's read keeps the run's MTCNN (inference/detectors/placed_finders.py).

Per frame, as theirs:
- letterbox (`letterbox`): the frame resized by cv2's bilinear `resize` so that it fits 640 x 640
  keeping its aspect (the long side 640, the other `int()` of the scaled length), pasted at the top
  left of a black 640 x 640 image; the scale is the new height over the old;
- input (`network_input`): (pixel - 127.5) / 128 in RGB order (theirs swaps the BGR frame's channels
  in `cv2.dnn.blobFromImage`; the frames here are RGB already);
- outputs (`decode`): 9 tensors, the scores, box distances and keypoint offsets of strides 8, 16 and
  32, two anchors at each location, centred at (x, y) x stride; a candidate has score >= 0.1; its box
  is the centre minus / plus the distances x stride and its 5 points the centre plus the offsets x
  stride, none clipped to the image;
- boxes and points divided by the scale, sorted by score (NumPy's `argsort`, reversed, as theirs),
  then their NMS (`nms`: areas with +1, a box suppressed when its overlap is above 0.4).
The float32 arithmetic is theirs step for step, so the boxes and points are the same numbers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from common.cli import InputError, describe
from preprocess.faces.face_detector import FaceDetections

FILE_NAME = "det_10g.onnx"  # insightface's buffalo_l pack; the user places it beside GenD's model.safetensors
PACKAGE_HINT = "pip install onnxruntime"
INPUT_SIZE = (640, 640)  # (width, height): prepare_model's input_size, used where the file's input has no fixed size
SCORE_THRESHOLD = 0.1  # the README's `--det_thres 0.1`
NMS_THRESHOLD = 0.4
STRIDES = (8, 16, 32)
ANCHORS = 2  # per location
INPUT_MEAN, INPUT_STD = 127.5, 128.0
OUTPUTS = 3 * len(STRIDES)  # scores, boxes, keypoints for each stride

_sessions: dict = {}
_lock = threading.Lock()


def letterbox(frame: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """The frame resized to fit `size` (width, height) with its aspect, at the top left of a black
    image of that size, and the scale (new height / old height) that maps it back."""
    height, width = frame.shape[:2]
    frame_ratio, input_ratio = float(height) / width, float(size[1]) / size[0]
    if frame_ratio > input_ratio:
        new_height = size[1]
        new_width = int(new_height / frame_ratio)
    else:
        new_width = size[0]
        new_height = int(new_width * frame_ratio)
    if not new_width or not new_height:
        raise ValueError(f"a {width} x {height} frame is too thin for SCRFD's {size[0]} x {size[1]} input")
    boxed = np.zeros((size[1], size[0], 3), np.uint8)
    boxed[:new_height, :new_width] = cv2.resize(frame, (new_width, new_height))
    return boxed, float(new_height) / height


def network_input(boxed: np.ndarray) -> np.ndarray:
    """(1, 3, H, W) float32 of an RGB uint8 image: (x - 127.5) / 128 (both steps exact in float32)."""
    planes = boxed.astype(np.float32).transpose(2, 0, 1)[None]
    return np.ascontiguousarray((planes - np.float32(INPUT_MEAN)) * np.float32(1.0 / INPUT_STD))


def anchor_centres(height: int, width: int, stride: int, anchors: int = ANCHORS) -> np.ndarray:
    """(height x width x anchors, 2) float32 centres (x, y) x stride, row by row, each location's
    anchors one after another (the order of the network's outputs)."""
    rows, columns = np.mgrid[:height, :width]
    centres = np.stack([columns, rows], axis=-1).astype(np.float32).reshape(-1, 2) * stride
    return np.repeat(centres, anchors, axis=0)


def decode(
    outputs: Sequence[np.ndarray], input_size: tuple[int, int] = INPUT_SIZE, threshold: float = SCORE_THRESHOLD
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates of the network's 9 outputs at `input_size` (width, height): scores (N,), boxes
    (N, 4) and points (N, 5, 2) in the letterboxed image's pixels, stride by stride, each stride's in
    anchor order."""
    if len(outputs) != OUTPUTS:
        raise ValueError(f"SCRFD gives {OUTPUTS} outputs with keypoints, not {len(outputs)}")
    scores, boxes, points = [], [], []
    for level, stride in enumerate(STRIDES):
        level_scores = np.asarray(outputs[level], np.float32).reshape(-1)
        distances = np.asarray(outputs[level + len(STRIDES)], np.float32).reshape(-1, 4)
        offsets = np.asarray(outputs[level + 2 * len(STRIDES)], np.float32).reshape(-1, 10)
        centres = anchor_centres(input_size[1] // stride, input_size[0] // stride, stride)
        kept = np.flatnonzero(level_scores >= threshold)
        centres, distances, offsets = centres[kept], distances[kept] * stride, offsets[kept] * stride
        x, y = centres[:, :1], centres[:, 1:]
        scores.append(level_scores[kept])
        corners = (x - distances[:, :1], y - distances[:, 1:2], x + distances[:, 2:3], y + distances[:, 3:])
        boxes.append(np.concatenate(corners, axis=1))
        points.append(np.stack([x + offsets[:, 0::2], y + offsets[:, 1::2]], axis=-1))
    return np.concatenate(scores), np.concatenate(boxes), np.concatenate(points)


def nms(detections: np.ndarray, threshold: float = NMS_THRESHOLD) -> list[int]:
    """Their greedy NMS of (N, 5) float32 rows (x1, y1, x2, y2, score): the rows kept, best first;
    areas and intersections with +1, a row dropped when its overlap with a kept one is above `threshold`."""
    x1, y1, x2, y2, scores = (detections[:, column] for column in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = width * height
        overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return keep


def frame_detections(
    outputs: Sequence[np.ndarray],
    scale: float,
    input_size: tuple[int, int] = INPUT_SIZE,
    threshold: float = SCORE_THRESHOLD,
    nms_threshold: float = NMS_THRESHOLD,
) -> FaceDetections:
    """The faces of one frame from the network's outputs on its letterbox of `scale`: in the frame's
    pixels, best score first, after NMS (their `detect` with max_num 0)."""
    scores, boxes, points = decode(outputs, input_size, threshold)
    order = scores.argsort()[::-1]
    candidates = np.hstack([boxes / scale, scores[:, None]]).astype(np.float32, copy=False)[order]
    points = (points / scale)[order]
    keep = nms(candidates, nms_threshold)
    kept = candidates[keep]
    return FaceDetections(
        np.ascontiguousarray(kept[:, :4]), np.ascontiguousarray(kept[:, 4]), np.ascontiguousarray(points[keep])
    )


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise InputError(f"GenD's face finder SCRFD needs onnxruntime, not installed ({PACKAGE_HINT})") from None
    return onnxruntime


def session(path: str | Path, device=None):
    """Their onnxruntime session on the file at `path` (CUDA where the run is on it and onnxruntime
    has it, else the CPU; OMP_NUM_THREADS threads, else 1, as theirs), loaded once and shared, with
    the input size it runs at; an InputError naming the file where it is not a SCRFD with keypoints
    that onnxruntime loads."""
    onnxruntime = _onnxruntime()
    providers = ["CPUExecutionProvider"]
    if getattr(device, "type", "cpu") == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    key = (str(path), tuple(providers))
    with _lock:
        if key not in _sessions:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", 1))
            options.log_severity_level = 3
            try:
                loaded = onnxruntime.InferenceSession(str(path), options, providers=providers)
            except Exception as error:
                raise InputError(f"{path}: not an ONNX model onnxruntime loads ({describe(error)})") from None
            inputs, outputs = loaded.get_inputs(), loaded.get_outputs()
            if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) != OUTPUTS:
                raise InputError(
                    f"{path}: not SCRFD with keypoints ({len(inputs)} inputs, {len(outputs)} outputs where "
                    f"det_10g.onnx has one 4-D input and {OUTPUTS} outputs)"
                )
            fixed = inputs[0].shape[2:4]
            size = INPUT_SIZE if any(not isinstance(side, int) for side in fixed) else (fixed[1], fixed[0])
            _sessions[key] = (loaded, size)
        return _sessions[key]


def check_scrfd(path: str | Path, device=None) -> None:
    """Refuse, before any video is read, a file that onnxruntime (or its absence) cannot run as SCRFD."""
    session(path, device)


def scrfd_detections(frames: Sequence[np.ndarray], path: str | Path, device=None) -> list[FaceDetections]:
    """Per RGB frame, every face SCRFD finds (their `detect`), in the frame's pixels; none in a frame
    too thin to letterbox."""
    loaded, size = session(path, device)
    name, output_names = loaded.get_inputs()[0].name, [output.name for output in loaded.get_outputs()]
    found = []
    for frame in frames:
        try:
            boxed, scale = letterbox(frame, size)
        except ValueError:  # their resize fails and their loop skips the frame
            found.append(FaceDetections.empty())
            continue
        outputs = loaded.run(output_names, {name: network_input(boxed)})
        found.append(frame_detections(outputs, scale, size))
    return found


def forget() -> None:
    """Let go of the sessions loaded so far (their memory)."""
    with _lock:
        _sessions.clear()
