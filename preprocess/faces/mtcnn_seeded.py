"""MTCNN's second and third stages on seed boxes, for fast mode's seeded detection
(inference/pipeline/face_tracks.py): faces searched for only around where nearby frames had them,
no image pyramid. The same networks, thresholds and box arithmetic as facenet-pytorch's
`detect_face` (its own helpers), and the candidates cut and resized as it cuts them, so that a
face's probability is what exact mode gives the same box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import batched_nms, batched_nms_numpy, bbreg, pad, rerec


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


def _run(network, patches: torch.Tensor, device: torch.device, chunk: int = 128) -> list[torch.Tensor]:
    """The network's outputs for the patches (a normalised NCHW tensor), `chunk` at a time, on the CPU."""
    outputs = [network(patches[start : start + chunk].to(device)) for start in range(0, len(patches), chunk)]
    return [torch.cat(parts).cpu() for parts in zip(*outputs, strict=True)]


def refine(
    images: Sequence[np.ndarray],
    boxes: torch.Tensor,
    image_of: torch.Tensor,
    mtcnn,
    thresholds: Sequence[float],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """MTCNN's second and third stages on square candidate boxes (N, >= 4: x1, y1, x2, y2 in the
    pixels of the image `image_of` names): RNet's threshold, regression and NMS, then ONet's, with
    the landmarks. Per image: boxes (N, 4), probabilities (N,) and landmarks (N, 5, 2)."""
    device = next(mtcnn.pnet.parameters()).device
    if len(boxes):
        reg, probs = _run(mtcnn.rnet, _candidates_as_facenet(images, image_of, boxes, 24), device)
        keep = probs[:, 1] > thresholds[1]
        boxes, image_of, reg = torch.cat((boxes[keep, :4], probs[keep, 1:2]), dim=1), image_of[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_of, 0.7)
        boxes, image_of = rerec(bbreg(boxes[pick], reg[pick])), image_of[pick]

    landmarks = torch.zeros(0, 5, 2)
    if len(boxes):
        reg, points, probs = _run(mtcnn.onet, _candidates_as_facenet(images, image_of, boxes, 48), device)
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
    images: Sequence[np.ndarray], seeds: Sequence[np.ndarray], mtcnn, thresholds: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Faces of each image searched for only where `seeds` (per image, boxes (N, 4) in its pixels:
    where faces were in nearby frames) say: each seed made square and passed to RNet and ONet as
    if PNet had proposed it, so no image pyramid is built. The images are of one size (the frames
    of a video). The candidates are cut and resized as facenet-pytorch's `detect_face` does (the
    frames at detection size, PyTorch's area interpolation), so that a face's probability is what
    exact mode's networks would give the same box: with OpenCV's area filter on the full frame, a
    face at 0.78 in exact mode (under ONet's 0.8) came out at 0.99 and moved a sharp model's video
    score by 0.56. What a seed misses is not found."""
    boxes = [np.asarray(found, np.float32).reshape(-1, 4) for found in seeds]
    if not sum(map(len, boxes)):
        return [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))] * len(images)
    image_of = torch.from_numpy(np.concatenate([np.full(len(b), k) for k, b in enumerate(boxes)]).astype(np.int64))
    stacked = torch.from_numpy(np.concatenate(boxes))
    candidates = torch.cat((stacked, torch.ones(len(stacked), 1)), dim=1)
    return refine(images, rerec(candidates), image_of, mtcnn, thresholds)
