"""Fake faces on real frames: a face swap from another identity, and self-blending.

Both are aligned from MTCNN's 5 landmarks and change only pixels under a feathered face mask,
with the artifacts real swaps leave: a blend seam, an inner face of lower resolution than the
frame, colour that almost matches, and per-frame jitter of the alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.faces.face_geometry import TEMPLATE, similarity_transform

# The inner face (brows to chin) on the template's unit square.
FACE_ELLIPSE_CENTER = np.array([0.5, 0.6])
FACE_ELLIPSE_AXES = np.array([0.32, 0.40])


def interocular_distance(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[1] - landmarks[0]))


def face_roi(landmarks: np.ndarray, frame_shape: tuple[int, ...], margin: float = 1.0) -> tuple[int, int, int, int]:
    """A box (x1, y1, x2, y2) around the face mask with room for feathering, inside the frame."""
    unit_to_frame = similarity_transform(TEMPLATE, landmarks)
    scale = np.sqrt(abs(np.linalg.det(unit_to_frame[:, :2])))
    center = unit_to_frame[:, :2] @ FACE_ELLIPSE_CENTER + unit_to_frame[:, 2]
    half = scale * FACE_ELLIPSE_AXES.max() * (1 + margin * 0.5)
    height, width = frame_shape[:2]
    x1, y1 = int(max(0, np.floor(center[0] - half))), int(max(0, np.floor(center[1] - half)))
    x2, y2 = int(min(width, np.ceil(center[0] + half))), int(min(height, np.ceil(center[1] + half)))
    return x1, y1, x2, y2


def face_mask(landmarks: np.ndarray, shape: tuple[int, int], feather: float, axes_scale: float = 1.0) -> np.ndarray:
    """Soft inner-face mask in [0, 1] of `shape` (h, w); `feather` is a fraction of the face size."""
    unit_to_frame = similarity_transform(TEMPLATE, landmarks)
    linear = unit_to_frame[:, :2]
    scale = np.sqrt(abs(np.linalg.det(linear)))
    angle = np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))
    center = linear @ FACE_ELLIPSE_CENTER + unit_to_frame[:, 2]
    axes = scale * FACE_ELLIPSE_AXES * axes_scale
    mask = np.zeros(shape, np.float32)
    shift = 4
    cv2.ellipse(
        mask,
        tuple(int(round(v * (1 << shift))) for v in center),
        tuple(int(round(v * (1 << shift))) for v in axes),
        angle,
        0,
        360,
        1.0,
        -1,
        cv2.LINE_AA,
        shift,
    )
    sigma = max(0.5, feather * scale)
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def transfer_color(source: np.ndarray, target: np.ndarray, mask: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Give `source` the mean and spread of `target` (in Lab) where the mask is set."""
    weights = (mask > 0.5).astype(np.float32)
    if weights.sum() < 16:
        return source
    source_lab = cv2.cvtColor(source.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    target_lab = cv2.cvtColor(target.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    selected = weights.astype(bool)
    source_mean, source_std = source_lab[selected].mean(0), source_lab[selected].std(0) + 1e-3
    target_mean, target_std = target_lab[selected].mean(0), target_lab[selected].std(0) + 1e-3
    matched = (source_lab - source_mean) / source_std * target_std + target_mean
    recoloured = source_lab + strength * (matched - source_lab)
    rgb = cv2.cvtColor(recoloured.astype(np.float32), cv2.COLOR_LAB2RGB) * 255
    return np.clip(rgb, 0, 255)


def blend(frame: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    alpha = mask[..., None]
    return np.clip(alpha * source + (1 - alpha) * frame, 0, 255).round().astype(np.uint8)


def canonical_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """The face of `image` warped onto the unit template at `size` x `size` pixels."""
    unit_to_image = similarity_transform(TEMPLATE, landmarks)
    face_scale = np.sqrt(abs(np.linalg.det(unit_to_image[:, :2])))
    shrink = min(1.0, size / face_scale)
    if shrink < 1.0:  # area-average first so that the warp does not alias
        image = cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        unit_to_image = unit_to_image * shrink
    canonical_to_image = unit_to_image @ np.diag([1.0 / size, 1.0 / size, 1.0])
    return cv2.warpAffine(
        image,
        canonical_to_image,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


@dataclass(frozen=True)
class SwapStyle:
    """How one fake video was made; drawn once per video, so difficulty varies between videos."""

    canonical_size: int  # resolution of the pasted inner face
    feather: float  # mask blur, as a fraction of the face size
    axes_scale: float  # mask size relative to the inner-face ellipse
    color_strength: float  # 1 = full colour match, less leaves a colour seam
    jitter: float  # per-frame landmark noise, as a fraction of the interocular distance
    gain: tuple[float, float, float]  # self-blend: per-channel colour shift
    offset: float  # self-blend: brightness shift in pixel levels
    warp_scale: float  # self-blend: scale of the warped copy
    warp_shift: tuple[float, float]  # self-blend: shift of the warped copy, in face sizes
    blur_sigma: float  # self-blend: softening of the copy, pixels


def sample_swap_style(rng: np.random.Generator) -> SwapStyle:
    return SwapStyle(
        canonical_size=int(rng.choice([48, 64, 96, 128])),
        feather=float(rng.uniform(0.03, 0.12)),
        axes_scale=float(rng.uniform(0.85, 1.05)),
        color_strength=float(rng.uniform(0.6, 1.0)),
        jitter=float(rng.uniform(0.005, 0.03)),
        gain=tuple(float(v) for v in rng.uniform(0.9, 1.1, 3)),
        offset=float(rng.uniform(-10, 10)),
        warp_scale=float(rng.uniform(0.96, 1.05)),
        warp_shift=tuple(float(v) for v in rng.uniform(-0.03, 0.03, 2)),
        blur_sigma=float(rng.uniform(0.0, 1.5)),
    )


def jitter_landmarks(landmarks: np.ndarray, style: SwapStyle, rng: np.random.Generator) -> np.ndarray:
    shift = rng.normal(0, style.jitter * interocular_distance(landmarks), size=2)
    return landmarks + shift + rng.normal(0, 0.3 * style.jitter * interocular_distance(landmarks), landmarks.shape)


def swap_face(frame: np.ndarray, landmarks: np.ndarray, source_face: np.ndarray, style: SwapStyle) -> np.ndarray:
    """Paste `source_face` (a `canonical_face`) onto the face at `landmarks` of `frame`."""
    x1, y1, x2, y2 = face_roi(landmarks, frame.shape)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return frame.copy()
    local = landmarks - np.array([x1, y1])
    region = frame[y1:y2, x1:x2]
    unit_to_region = similarity_transform(TEMPLATE, local)
    size = source_face.shape[0]
    canonical_to_region = unit_to_region @ np.diag([1.0 / size, 1.0 / size, 1.0])
    pasted = cv2.warpAffine(
        source_face,
        canonical_to_region,
        (x2 - x1, y2 - y1),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask = face_mask(local, region.shape[:2], style.feather, style.axes_scale)
    pasted = transfer_color(pasted, region, mask, style.color_strength)
    out = frame.copy()
    out[y1:y2, x1:x2] = blend(region, pasted, mask)
    return out


def self_blend(frame: np.ndarray, landmarks: np.ndarray, style: SwapStyle) -> np.ndarray:
    """Blend a slightly warped, recoloured copy of the face back onto itself."""
    x1, y1, x2, y2 = face_roi(landmarks, frame.shape)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return frame.copy()
    local = landmarks - np.array([x1, y1])
    region = frame[y1:y2, x1:x2]
    face_size = interocular_distance(local) * 2.5
    center = local.mean(0)
    warp = cv2.getRotationMatrix2D((float(center[0]), float(center[1])), 0.0, style.warp_scale)
    warp[:, 2] += np.array(style.warp_shift) * face_size
    copy = cv2.warpAffine(region, warp, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if style.blur_sigma > 0.3:
        copy = cv2.GaussianBlur(copy, (0, 0), style.blur_sigma)
    copy = copy.astype(np.float32) * np.array(style.gain, np.float32) + style.offset
    mask = face_mask(local, region.shape[:2], style.feather, style.axes_scale)
    out = frame.copy()
    out[y1:y2, x1:x2] = blend(region, copy, mask)
    return out
