"""MTCNN's three stages with every image resized by OpenCV, for fast detection on CPUs.

facenet-pytorch's `detect_face` builds each level of the image pyramid and each candidate face
for the second and third networks with PyTorch's area interpolation, one call per candidate (a
hundred and more per frame), on float copies of the frame. Here the same stages, networks,
thresholds, pyramid levels and box arithmetic (facenet-pytorch's own helpers) run on the uint8
image resized by `cv2.resize`: the pyramid level by level with the bilinear filter, the
candidates with the area filter. The boxes are those of `detect_face` to within a pixel or two, not
exactly: only fast mode uses this.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms,
    batched_nms_numpy,
    bbreg,
    generateBoundingBox,
    pad,
    rerec,
)


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` at width x height: area filter when it shrinks, bilinear when it grows."""
    shrinks = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """The scales of MTCNN's image pyramid, as facenet-pytorch computes them."""
    scale, smallest = 12.0 / min_face_size, min(height, width) * 12.0 / min_face_size
    scales = []
    while smallest >= 12:
        scales.append(scale)
        scale, smallest = scale * factor, smallest * factor
    return scales


def _network_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC images as MTCNN's normalised NCHW float input (channels-last in memory)."""
    batch = torch.from_numpy(np.ascontiguousarray(images))
    return ((batch.permute(0, 3, 1, 2).float() - 127.5) * 0.0078125).to(device)


def _candidates(images: Sequence[np.ndarray], image_of: torch.Tensor, boxes: torch.Tensor, size: int) -> np.ndarray:
    """The boxes' patches of their images resized to size x size (a box that leaves its image
    clipped to it; zero where it is wholly outside)."""
    height, width = images[0].shape[:2]
    y, ey, x, ex = (np.asarray(v) for v in pad(boxes, width, height))
    patches = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k, image in enumerate(image_of.tolist()):
        if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
            patches[k] = resized(images[image][y[k] - 1 : ey[k], x[k] - 1 : ex[k]], size, size)
    return patches


def _candidates_as_facenet(
    images: Sequence[np.ndarray], image_of: torch.Tensor, boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """The boxes' patches as facenet-pytorch's `detect_face` makes them: cut from the image (a box
    that leaves it clipped to it), resized by PyTorch's area interpolation, normalised; a box
    wholly outside gets a neutral input (which no network threshold lets through)."""
    height, width = images[0].shape[:2]
    y, ey, x, ex = (np.asarray(v) for v in pad(boxes, width, height))
    patches = torch.full((len(boxes), 3, size, size), 127.5)
    for k, image in enumerate(image_of.tolist()):
        if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
            cut = np.ascontiguousarray(images[image][y[k] - 1 : ey[k], x[k] - 1 : ex[k]])
            patch = torch.from_numpy(cut).permute(2, 0, 1).float().unsqueeze(0)
            patches[k] = torch.nn.functional.interpolate(patch, size=(size, size), mode="area")[0]
    return (patches - 127.5) * 0.0078125


def _run(network, patches, device: torch.device, chunk: int = 128) -> list[torch.Tensor]:
    """The network's outputs for the patches (uint8 NHWC, or a normalised NCHW tensor), `chunk` at
    a time, on the CPU."""
    as_input = (
        (lambda part: part.to(device)) if torch.is_tensor(patches) else (lambda part: _network_input(part, device))
    )
    outputs = [network(as_input(patches[start : start + chunk])) for start in range(0, len(patches), chunk)]
    return [torch.cat(parts).cpu() for parts in zip(*outputs, strict=True)]


# Frames of a group, at most this many pixels at detection size: eight half-size 720p frames. Groups
# of 32 such frames were slower on CPUs: the first pyramid level's activations left the caches.
GROUP_PIXELS = 2_000_000


def group_size(width: int, height: int) -> int:
    """How many frames of width x height (at detection size) `detect_faces` is best given at once."""
    return max(1, GROUP_PIXELS // (width * height))


def detect_faces(
    images: Sequence[np.ndarray], mtcnn, min_face_size: float, thresholds: Sequence[float], factor: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Boxes (N, 4), probabilities (N,) and landmarks (N, 5, 2) of the faces in each of several
    RGB uint8 images of one size, in their pixels, by the networks of a facenet-pytorch `MTCNN`.
    Each network runs once per pyramid level for the whole group, and on candidates 128 at a time:
    on a CPU the Python and dispatch cost of MTCNN's many small calls is much of its time."""
    height, width = images[0].shape[:2]
    device = next(mtcnn.pnet.parameters()).device
    found, found_in = [], []
    levels = list(images)
    for scale in pyramid_scales(height, width, min_face_size, factor):
        # each level from the one before (at most halving it, so bilinear does not alias): several
        # times cheaper than OpenCV's area filter at these ratios
        size = (int(width * scale + 1), int(height * scale + 1))
        levels = [cv2.resize(level, size, interpolation=cv2.INTER_LINEAR) for level in levels]
        reg, probs = mtcnn.pnet(_network_input(np.stack(levels), device))
        boxes, image_of = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_of, 0.5)
        found.append(boxes[pick])
        found_in.append(image_of[pick])
    boxes, image_of = torch.cat(found).cpu(), torch.cat(found_in).cpu()
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7)
    boxes, image_of = boxes[pick], image_of[pick]
    width_, height_ = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack(
        [
            boxes[:, 0] + boxes[:, 5] * width_,
            boxes[:, 1] + boxes[:, 6] * height_,
            boxes[:, 2] + boxes[:, 7] * width_,
            boxes[:, 3] + boxes[:, 8] * height_,
            boxes[:, 4],
        ],
        dim=1,
    )
    return refine(images, rerec(boxes), image_of, mtcnn, thresholds)


def refine(
    images: Sequence[np.ndarray],
    boxes: torch.Tensor,
    image_of: torch.Tensor,
    mtcnn,
    thresholds: Sequence[float],
    as_facenet: bool = False,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """MTCNN's second and third stages on square candidate boxes (N, >= 4: x1, y1, x2, y2 in the
    pixels of the image `image_of` names): RNet's threshold, regression and NMS, then ONet's, with
    the landmarks. Per image: boxes (N, 4), probabilities (N,) and landmarks (N, 5, 2)."""
    device = next(mtcnn.pnet.parameters()).device
    candidates = _candidates_as_facenet if as_facenet else _candidates
    if len(boxes):
        reg, probs = _run(mtcnn.rnet, candidates(images, image_of, boxes, 24), device)
        keep = probs[:, 1] > thresholds[1]
        boxes, image_of, reg = torch.cat((boxes[keep, :4], probs[keep, 1:2]), dim=1), image_of[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7)
        boxes, image_of = rerec(bbreg(boxes[pick], reg[pick])), image_of[pick]

    landmarks = torch.zeros(0, 5, 2)
    if len(boxes):
        reg, points, probs = _run(mtcnn.onet, candidates(images, image_of, boxes, 48), device)
        keep = probs[:, 1] > thresholds[2]
        boxes, image_of = torch.cat((boxes[keep, :4], probs[keep, 1:2]), dim=1), image_of[keep]
        points, reg = points[keep], reg[keep]
        box_width, box_height = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        landmarks = torch.stack(
            (
                box_width[:, None] * points[:, :5] + boxes[:, 0:1] - 1,
                box_height[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1,
            ),
            dim=2,
        )
        boxes = bbreg(boxes, reg)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_of, 0.7, "Min")
        boxes, image_of, landmarks = boxes[pick], image_of[pick], landmarks[pick]

    boxes, landmarks, image_of = (
        boxes.numpy().astype(np.float32).reshape(-1, 5),
        landmarks.numpy().astype(np.float32),
        np.asarray(image_of).reshape(-1),
    )
    return [
        (boxes[image_of == image, :4], boxes[image_of == image, 4], landmarks[image_of == image])
        for image in range(len(images))
    ]


def detect_seeded(
    images: Sequence[np.ndarray], seeds: Sequence[np.ndarray], mtcnn, thresholds: Sequence[float], as_facenet=False
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Faces of each image searched for only where `seeds` (per image, boxes (N, 4) in its pixels:
    where faces were in nearby frames) say: each seed made square and passed to RNet and ONet as
    if PNet had proposed it, so no image pyramid is built. The images are of one size (the frames
    of a video). With `as_facenet`, the candidates are cut and resized as facenet-pytorch's
    `detect_face` does (the frames at detection size, PyTorch's area interpolation), so that a
    face's probability is what exact mode's networks would give the same box: with OpenCV's area
    filter on the full frame, a face at 0.78 in exact mode (under ONet's 0.8) came out at 0.99 and
    moved a sharp model's video score by 0.56. What a seed misses is not found."""
    boxes = [np.asarray(found, np.float32).reshape(-1, 4) for found in seeds]
    if not sum(map(len, boxes)):
        return [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))] * len(images)
    image_of = torch.from_numpy(np.concatenate([np.full(len(b), k) for k, b in enumerate(boxes)]).astype(np.int64))
    stacked = torch.from_numpy(np.concatenate(boxes))
    candidates = torch.cat((stacked, torch.ones(len(stacked), 1)), dim=1)
    return refine(images, rerec(candidates), image_of, mtcnn, thresholds, as_facenet)
