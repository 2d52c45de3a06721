"""Face identities for the demo world: photos that installed packages ship, or the user's own.

An identity is a still photo holding exactly one face, with that face's MTCNN box and 5
landmarks. A photo with several faces gives one identity per face: the region around each face,
with the other faces blurred beyond recognition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from preprocess.faces.face_detector import TRAIN_THRESHOLDS, FaceDetector

logger = logging.getLogger(__name__)

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MIN_FACE_HEIGHT = 48
CONTEXT = 1.2  # region kept around a face in a group photo, in face sizes on each side


@dataclass(frozen=True)
class Identity:
    name: str
    image: np.ndarray  # RGB uint8
    box: np.ndarray  # (4,) x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2)

    @property
    def face_height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def face_center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], np.float32)


def builtin_photos() -> dict[str, np.ndarray]:
    """Face photos shipped inside installed packages (no download)."""
    import matplotlib.cbook
    import skimage.data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        grace_hopper = np.asarray(Image.open(handle).convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": grace_hopper}


def load_photo(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def photos_from_dir(faces_dir: Path) -> dict[str, np.ndarray]:
    paths = sorted(p for p in Path(faces_dir).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{faces_dir}: no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) found")
    photos = {}
    for path in paths:
        try:
            photos[path.stem] = load_photo(path)
        except OSError as error:
            logger.warning("%s: skipped, not a readable image (%s)", path, error)
    return photos


def _blur_region(image: np.ndarray, box: np.ndarray) -> None:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    pad_x, pad_y = 0.25 * (x2 - x1), 0.25 * (y2 - y1)
    left, top = max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y))
    right, bottom = min(width, int(x2 + pad_x) + 1), min(height, int(y2 + pad_y) + 1)
    if right <= left or bottom <= top:
        return
    region = image[top:bottom, left:right]
    sigma = max(3.0, 0.25 * max(right - left, bottom - top))
    image[top:bottom, left:right] = cv2.GaussianBlur(region, (0, 0), sigma)


def identities_from_photo(name: str, photo: np.ndarray, detector: FaceDetector) -> list[Identity]:
    """One identity per clearly visible face of the photo."""
    faces = detector.detect(photo)
    keep = [i for i in range(len(faces)) if faces.boxes[i, 3] - faces.boxes[i, 1] >= MIN_FACE_HEIGHT]
    identities = []
    for rank, index in enumerate(sorted(keep, key=lambda i: faces.boxes[i, 0])):
        image = photo.copy()
        for other in range(len(faces)):
            if other != index:
                _blur_region(image, faces.boxes[other])
        box, landmarks = faces.boxes[index], faces.landmarks[index]
        if len(faces) > 1:
            size = max(box[2] - box[0], box[3] - box[1])
            left = int(max(0, box[0] - CONTEXT * size))
            top = int(max(0, box[1] - CONTEXT * size))
            right = int(min(photo.shape[1], box[2] + CONTEXT * size))
            bottom = int(min(photo.shape[0], box[3] + CONTEXT * size))
            image = image[top:bottom, left:right].copy()
            offset = np.array([left, top], np.float32)
            box = box - np.tile(offset, 2)
            landmarks = landmarks - offset
        label = name if len(keep) == 1 else f"{name}_{rank}"
        identities.append(Identity(label, image, box.astype(np.float32), landmarks.astype(np.float32)))
    return identities


def load_identities(faces_dir: Path | None = None, device: str | None = None) -> list[Identity]:
    """Identities from the user's photos, or from the photos that installed packages ship."""
    photos = photos_from_dir(faces_dir) if faces_dir is not None else builtin_photos()
    detector = FaceDetector(thresholds=TRAIN_THRESHOLDS, scale=1.0, device=device)
    identities = []
    for name, photo in photos.items():
        found = identities_from_photo(name, photo, detector)
        if not found:
            logger.warning("%s: no face of at least %d px found, photo skipped", name, MIN_FACE_HEIGHT)
        identities.extend(found)
    if not identities:
        source = faces_dir if faces_dir is not None else "the built-in photos"
        raise ValueError(f"{source}: no usable face found (need faces of at least {MIN_FACE_HEIGHT} px)")
    return identities
