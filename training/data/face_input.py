"""A face crop as a classifier takes it: resized isotropically, and as a normalised tensor.

Kept apart from training/data/augment.py and training/data/dataset.py (which re-export them) so that
prediction imports neither albumentations nor pandas: a fifth of a second each at every start.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def isotropically_resize_image(
    image: np.ndarray, size: int, interpolation_down: int = cv2.INTER_AREA, interpolation_up: int = cv2.INTER_CUBIC
) -> np.ndarray:
    """Resize so that the longer side is `size`, keeping the aspect ratio (sizes truncated to int)."""
    height, width = image.shape[:2]
    if max(width, height) == size:
        return image
    if width > height:
        scale = size / width
        new_width, new_height = size, height * scale
    else:
        scale = size / height
        new_width, new_height = width * scale, size
    interpolation = interpolation_up if scale > 1 else interpolation_down
    return cv2.resize(image, (int(new_width), int(new_height)), interpolation=interpolation)


def to_tensor(image: np.ndarray, mean, std) -> torch.Tensor:
    array = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())
