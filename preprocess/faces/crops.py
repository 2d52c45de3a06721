"""Crop geometry of the recipe: the face box grown by a third of its size on each side."""

from __future__ import annotations

import numpy as np


def crop_region(box, frame_shape: tuple[int, ...], margin_divisor: int = 3) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) in integer pixels, clipped to the frame, as the original computed it.

    The box corners are truncated to int, then grown by (width // 3, height // 3) on each side.
    """
    xmin, ymin, xmax, ymax = (int(value) for value in box)
    pad_w, pad_h = (xmax - xmin) // margin_divisor, (ymax - ymin) // margin_divisor
    height, width = frame_shape[:2]
    return max(xmin - pad_w, 0), max(ymin - pad_h, 0), min(xmax + pad_w, width), min(ymax + pad_h, height)


def crop_face(frame: np.ndarray, box, margin_divisor: int = 3) -> np.ndarray:
    x1, y1, x2, y2 = crop_region(box, frame.shape, margin_divisor)
    return frame[y1:y2, x1:x2]
