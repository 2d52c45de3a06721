"""GenD's frames, face alignment and CLIP input, as pure functions (yermandy/GenD @ e03532d).

- Frames (`farthest_first_order`): the paper pipeline's `at_least` mode (detector.py) tries every
  frame in a farthest-first order that starts at the middle frame (each next frame the one farthest
  from all those before it, the smaller index on ties) and keeps the first 32 that have a face.
- Faces: the largest box of a frame (`largest_face`: (x2 - x1) * (y2 - y1), the first on ties).
- Alignment (`align_face`): the face's 5 landmarks (left eye, right eye, nose, mouth left, mouth
  right) to GenD's template by OpenCV's 4-degree-of-freedom partial affine with LMEDS, warped to a
  square of S x S pixels, S = round(1.3 x the mean ratio of the landmarks' 10 pairwise distances to
  the template's) (detector.py `align_face` with `--target_size none -s 1.3`, the README's command).
  The authors warp the BGR frame and write PNG that the dataset reads back as RGB: warping the RGB
  frame gives the same pixels (each channel is warped alone).
- CLIP input (`clip_input`): what the slow `CLIPImageProcessor` of openai/clip-vit-large-patch14
  (transformers 4.56.2, the authors' pin) does, with PIL: shortest side to 224 by bicubic, the long
  side int(224 * long / short), centre crop 224, x / 255 in float64 then float32, CLIP mean and std.

The float types follow the authors' NumPy 2 arithmetic exactly (see `alignment_size` and
`alignment_target`): a different rounding of one template point moves LMEDS's matrix, and the
1/32-pixel grid of OpenCV's bilinear warp can turn that into a pixel.
"""

from __future__ import annotations

import heapq

import cv2
import numpy as np
from PIL import Image

TEMPLATE = ((0.34, 0.46), (0.66, 0.46), (0.5, 0.64), (0.37, 0.82), (0.63, 0.82))  # detector.py l.156-165
ALIGN_SCALE = 1.3
FRAMES = 32
CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_RESCALE = 0.00392156862745098  # preprocessor_config.json's rescale_factor (1/255)


def farthest_first_order(count: int, start: int | None = None) -> list[int]:
    """All of 0..count-1, `start` (default count // 2) first, then each time the index farthest from
    every index taken so far (the smaller on ties). The untaken indices lie in gaps between taken
    ones (or beyond the first and last taken): each gap's best index is its middle (or its far end),
    so a heap of the gaps' best gives the order in O(n log n)."""
    if count <= 0:
        return []
    start = count // 2 if start is None else start
    if not 0 <= start < count:
        raise ValueError(f"start {start} is outside 0..{count - 1}")
    order = [start]
    heap: list[tuple[int, int, int, int]] = []  # (-distance, index, gap's low end, gap's high end)

    def push(low: int, high: int) -> None:  # the untaken indices strictly between low and high
        if low == -1 and high > 0:  # before the first taken index: its far end, 0
            heapq.heappush(heap, (-high, 0, low, high))
        elif high == count and low < count - 1:  # after the last taken index: count - 1
            heapq.heappush(heap, (-(count - 1 - low), count - 1, low, high))
        elif low >= 0 and high < count and high - low > 1:
            middle = (low + high) // 2  # the smaller middle where there are two
            heapq.heappush(heap, (-(middle - low), middle, low, high))

    push(-1, start)
    push(start, count)
    while heap:
        _, index, low, high = heapq.heappop(heap)
        order.append(index)
        push(low, index)
        push(index, high)
    return order


def largest_face(boxes: np.ndarray) -> int:
    """The index of the largest box (x1, y1, x2, y2) by (x2 - x1) * (y2 - y1), the first on ties."""
    boxes = np.asarray(boxes)
    return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def alignment_size(landmarks: np.ndarray, scale: float = ALIGN_SCALE) -> int:
    """S, the side of the aligned square: round(scale x the mean over the 10 landmark pairs of their
    distance over the template's). In float32 throughout, as the authors' NumPy 2 computes it from
    float32 landmarks (a Python float does not promote a float32 under NEP 50); round half to even."""
    points = np.asarray(landmarks, np.float32).reshape(5, 2)
    template = np.asarray(TEMPLATE, np.float32)
    first, second = np.triu_indices(5, k=1)
    distances = np.linalg.norm(points[first] - points[second], axis=-1)
    template_distances = np.linalg.norm(template[first] - template[second], axis=-1)
    return int(np.round(np.mean(distances / template_distances) * np.float32(scale)))


def alignment_target(size: int, scale: float = ALIGN_SCALE) -> np.ndarray:
    """The template in the S x S square (float32, 5 x 2): (template x S + margin) x S / (S + 2 x margin),
    margin = S x (scale - 1) / 2. S is a NumPy integer in the authors' code, so each step is computed
    in float64 and stored back into the float32 array."""
    side = np.int64(size)
    target = np.asarray(TEMPLATE, np.float32).copy()
    target[:] = target.astype(np.float64) * side
    margin = side * (scale - 1) / 2.0
    target[:] = target.astype(np.float64) + margin
    target[:] = target.astype(np.float64) * (side / (side + 2 * margin))
    return target


def alignment_matrix(landmarks: np.ndarray, scale: float = ALIGN_SCALE) -> tuple[np.ndarray | None, int]:
    """The 2 x 3 similarity taking the landmarks to `alignment_target` (OpenCV's LMEDS estimate with
    its defaults, as the authors call it), and S; None where OpenCV finds none."""
    size = alignment_size(landmarks, scale)
    if size < 1:
        return None, size
    source = np.asarray(landmarks, np.float32).reshape(5, 2)
    matrix, _ = cv2.estimateAffinePartial2D(source, alignment_target(size, scale), method=cv2.LMEDS)
    return matrix, size


def align_face(frame: np.ndarray, landmarks: np.ndarray, scale: float = ALIGN_SCALE) -> np.ndarray | None:
    """The face of `frame` (uint8, any channel order: the crop keeps it) aligned to GenD's template,
    S x S; None where the landmarks give no transform (all in one point)."""
    matrix, size = alignment_matrix(landmarks, scale)
    if matrix is None:
        return None
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR)


def clip_resized_size(width: int, height: int, size: int = CLIP_SIZE) -> tuple[int, int]:
    """(width, height) with the shortest side `size` and the other int(size * long / short), or the
    image's own where its shortest side is `size` already (then it is not resized)."""
    short, long = (width, height) if width <= height else (height, width)
    if short == size:
        return width, height
    other = int(size * long / short)
    return (size, other) if width <= height else (other, size)


def clip_input(crop_rgb: np.ndarray) -> np.ndarray:
    """A uint8 RGB crop as CLIP's slow image processor makes it: float32, 3 x 224 x 224."""
    image = Image.fromarray(np.ascontiguousarray(crop_rgb)).convert("RGB")
    width, height = clip_resized_size(*image.size)
    if (width, height) != image.size:
        image = image.resize((width, height), resample=Image.BICUBIC, reducing_gap=None)
    pixels = np.asarray(image)
    top, left = (height - CLIP_SIZE) // 2, (width - CLIP_SIZE) // 2
    pixels = pixels[top : top + CLIP_SIZE, left : left + CLIP_SIZE]
    scaled = (pixels.astype(np.float64) * CLIP_RESCALE).astype(np.float32)
    normalised = (scaled - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1))
