"""Self-Blended Images' face selection and crop geometry, as pure functions on one frame's boxes.

Read from mapooon/SelfBlendedImages @ 9fe4efe, src/inference/preprocess.py (`extract_frames`,
`crop_face(..., crop_by_bbox=True, only_img=True, phase='test')`), and from the face finder it
calls, ternaus/retinaface 0.0.8 `predict_jsons` (retinaface/predict_single.py):

- the finder drops a box whose clipped extent is degenerate (`x_min` clipped to [0, W-1] then
  `x_max` clipped to [x_min+1, W-1]: dropped when x_min >= x_max; likewise y) and returns the
  others UNCLIPPED, rounded to 2 decimals (`np.round(bbox.astype(float), 2)`);
- every face is cropped: the box widened by w/8 and h/8 on each side (w/4 halved for
  phase='test'), `int()` truncation toward zero, +1 on the exclusive ends, clamped to the frame
  (the low ends at 0, the high ends at W and H only from above: an end that comes out negative
  slices from the far side, as Python slicing does in their code), not square, `cv2.resize` to
  380 x 380 with OpenCV's default INTER_LINEAR;
- a crop with no pixels makes `cv2.resize` raise inside their per-frame `try`: the frame then
  gives no face at all;
- then only the faces whose box area ((x1-x0)*(y1-y0) of the rounded box) is at least half the
  largest's are kept (inclusive), in the finder's order.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

INPUT_SIZE = 380  # their `image_size=(380, 380)`
BOX_DECIMALS = 2  # retinaface's ROUNDING_DIGITS


def finder_box(box: Sequence[float], width: int, height: int) -> list[float] | None:
    """A detected box as RetinaFace's `predict_jsons` returns it: None where its clipped extent is
    degenerate, else unclipped and rounded to 2 decimals (float64 arithmetic)."""
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    x_min_clipped = np.clip(x_min, 0, width - 1)
    if x_min_clipped >= np.clip(x_max, x_min_clipped + 1, width - 1):
        return None
    y_min_clipped = np.clip(y_min, 0, height - 1)
    if y_min_clipped >= np.clip(y_max, y_min_clipped + 1, height - 1):
        return None
    return np.round(np.asarray(box, dtype=float), BOX_DECIMALS).tolist()


def crop_bounds(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of `crop_face` for `box` (x0, y0, x1, y1) in a `width` x `height` frame,
    slice bounds as their code computes them (an end may be negative: see the module's docstring)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    w_margin, h_margin = w / 4 * 0.5, h / 4 * 0.5
    return (
        max(0, int(y0 - h_margin)),
        min(height, int(y1 + h_margin) + 1),
        max(0, int(x0 - w_margin)),
        min(width, int(x1 + w_margin) + 1),
    )


def crop(frame: np.ndarray, box: Sequence[float], size: int = INPUT_SIZE) -> np.ndarray | None:
    """The face of `box` cropped and resized to size x size (uint8, the frame's channels), or None
    where the crop has no pixels (their `cv2.resize` raises there)."""
    y0, y1, x0, x1 = crop_bounds(box, frame.shape[1], frame.shape[0])
    region = frame[y0:y1, x0:x1]
    if not region.size:
        return None
    return cv2.resize(region, dsize=(size, size))


def box_area(box: Sequence[float]) -> float:
    x0, y0, x1, y1 = box
    return (x1 - x0) * (y1 - y0)


def kept_faces(boxes: Sequence[Sequence[float]]) -> list[int]:
    """Positions of the boxes whose area is at least half the largest's, in their order."""
    areas = [box_area(box) for box in boxes]
    if not areas:
        return []
    largest = max(areas)
    return [position for position, area in enumerate(areas) if area >= largest / 2]


def frame_faces(
    frame: np.ndarray,
    detected: Sequence[Sequence[float]],
    size: int = INPUT_SIZE,
    from_retinaface: bool = False,
    every_face: bool = False,
) -> tuple[list[list[float]], list[np.ndarray]]:
    """One frame's kept boxes (as the finder returns them) and their crops: every box the finder
    keeps is cropped, a crop without pixels loses the whole frame, then the area rule (not for a
    photo, `every_face`: their inference_image.py's extract_face keeps every face).
    `from_retinaface`: the boxes are RetinaFace's own output (inference/detectors/sbi_retinaface.py)."""
    height, width = frame.shape[:2]
    if from_retinaface:
        boxes = [[float(v) for v in box] for box in detected]
    else:
        boxes = [box for box in (finder_box(b, width, height) for b in detected) if box is not None]
    crops = [crop(frame, box, size) for box in boxes]
    if any(face is None for face in crops):
        return [], []
    kept = range(len(boxes)) if every_face else kept_faces(boxes)
    return [boxes[i] for i in kept], [crops[i] for i in kept]
