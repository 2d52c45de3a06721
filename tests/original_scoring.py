"""The original solution's frame reading and video scoring (kernel_utils.py's VideoReader,
FaceExtractor, predict_on_video and confident_strategy), step for step, in fp32 on the CPU: what
tests/test_predict.py holds inference.predict's scores to."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image


def original_read_frames(path, num_frames=32, distinct=False) -> list[np.ndarray]:
    """The original's VideoReader.read_frames, step for step: grab every frame from the first sampled
    index to the last, retrieve a frame when it equals the next wanted index. With fewer frames than
    `num_frames` the indices repeat, and the original then stops matching after the first repeat;
    `distinct=True` reads each distinct index instead (what we do)."""
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    indices = np.linspace(0, count - 1, num_frames, endpoint=True, dtype=int)
    wanted = sorted(set(indices.tolist())) if distinct else indices
    frames = []
    for index in range(indices[0], indices[-1] + 1):
        if not capture.grab():
            break
        if index == wanted[len(frames)]:
            ok, frame = capture.retrieve()
            if not ok or frame is None:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def original_video_score(frames, model) -> float:
    """The original's FaceExtractor + predict_on_video + confident_strategy on `frames` (fp32, CPU)."""
    detector = MTCNN(margin=0, thresholds=[0.7, 0.8, 0.8], device="cpu")
    faces = []
    for frame in frames:
        image = Image.fromarray(frame)
        image = image.resize(size=[s // 2 for s in image.size])
        boxes, _ = detector.detect(image, landmarks=False)
        for box in boxes if boxes is not None else []:
            xmin, ymin, xmax, ymax = (int(b * 2) for b in box)
            p_h, p_w = (ymax - ymin) // 3, (xmax - xmin) // 3
            faces.append(frame[max(ymin - p_h, 0) : ymax + p_h, max(xmin - p_w, 0) : xmax + p_w])
    size = 224
    batch = []
    for face in faces:
        h, w = face.shape[:2]
        scale = size / max(h, w)
        new = (size, int(h * scale)) if w > h else (int(w * scale), size)
        face = cv2.resize(face, new, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        canvas = np.zeros((size, size, 3), np.uint8)
        top, left = (size - face.shape[0]) // 2, (size - face.shape[1]) // 2
        canvas[top : top + face.shape[0], left : left + face.shape[1]] = face
        batch.append(canvas)
    x = torch.tensor(np.stack(batch)).float().permute(0, 3, 1, 2) / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    x = (x - mean[:, None, None]) / std[:, None, None]
    with torch.no_grad():
        p = torch.sigmoid(model(x).squeeze()).numpy()
    fakes = np.count_nonzero(p > 0.8)
    if fakes > len(p) // 2.5 and fakes > 11:
        return float(np.mean(p[p > 0.8]))
    if np.count_nonzero(p < 0.2) > 0.9 * len(p):
        return float(np.mean(p[p < 0.2]))
    return float(np.mean(p))
