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


def _candidates(image: np.ndarray, boxes: torch.Tensor, size: int) -> np.ndarray:
    """The boxes' patches of `image` (zero where a box leaves it) resized to size x size."""
    height, width = image.shape[:2]
    y, ey, x, ex = (np.asarray(v) for v in pad(boxes, width, height))
    patches = np.zeros((len(boxes), size, size, 3), np.uint8)
    for k in range(len(boxes)):
        if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
            patches[k] = resized(image[y[k] - 1 : ey[k], x[k] - 1 : ex[k]], size, size)
    return patches


def detect_face(
    image: np.ndarray, mtcnn, min_face_size: float, thresholds: Sequence[float], factor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4), probabilities (N,) and landmarks (N, 5, 2) of the faces in one RGB uint8
    image, in its pixels, by the networks of a facenet-pytorch `MTCNN`."""
    device = next(mtcnn.pnet.parameters()).device
    height, width = image.shape[:2]
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    found = []
    level = image
    for scale in pyramid_scales(height, width, min_face_size, factor):
        # each level from the one before (at most halving it, so bilinear does not alias): several
        # times cheaper than OpenCV's area filter at these ratios
        level = cv2.resize(level, (int(width * scale + 1), int(height * scale + 1)), interpolation=cv2.INTER_LINEAR)
        reg, probs = mtcnn.pnet(_network_input(level[None], device))
        boxes, _ = generateBoundingBox(reg, probs[:, 1], scale, thresholds[0])
        found.append(boxes[batched_nms(boxes[:, :4], boxes[:, 4], torch.zeros(len(boxes), device=device), 0.5)])
    boxes = torch.cat(found).cpu()
    if not len(boxes):
        return empty
    one_image = torch.zeros(len(boxes))
    boxes = boxes[batched_nms(boxes[:, :4], boxes[:, 4], one_image, 0.7)]
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
    boxes = rerec(boxes)

    reg, probs = (out.cpu() for out in mtcnn.rnet(_network_input(_candidates(image, boxes, 24), device)))
    keep = probs[:, 1] > thresholds[1]
    boxes = torch.cat((boxes[keep, :4], probs[keep, 1:2]), dim=1)
    reg = reg[keep]
    if not len(boxes):
        return empty
    pick = batched_nms(boxes[:, :4], boxes[:, 4], torch.zeros(len(boxes)), 0.7)
    boxes = rerec(bbreg(boxes[pick], reg[pick]))

    reg, points, probs = (out.cpu() for out in mtcnn.onet(_network_input(_candidates(image, boxes, 48), device)))
    keep = probs[:, 1] > thresholds[2]
    boxes, points, reg = torch.cat((boxes[keep, :4], probs[keep, 1:2]), dim=1), points[keep], reg[keep]
    if not len(boxes):
        return empty
    box_width, box_height = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    landmarks = torch.stack(
        (
            box_width[:, None] * points[:, :5] + boxes[:, 0:1] - 1,
            box_height[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1,
        ),
        dim=2,
    )
    boxes = bbreg(boxes, reg)
    pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], torch.zeros(len(boxes)), 0.7, "Min")
    boxes, landmarks = boxes[pick], landmarks[pick]
    return boxes[:, :4].numpy().astype(np.float32), boxes[:, 4].numpy().astype(np.float32), landmarks.numpy()
