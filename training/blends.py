"""Self-blended fakes (Shiohara & Yamasaki, CVPR 2022): a real face blended onto itself.

A copy of a real crop (the source) is altered in colour or sharpness and slightly misaligned,
then pasted back onto the crop (the target) under a soft face mask. What is left are the traces
every face swap leaves, a blend boundary and a source that does not quite match its target,
without any one method's fingerprints, so a model trained on them has no method to overfit.

The mask starts from the face hull that the 5 MTCNN landmarks place (preprocess/face_geometry),
grown or shrunk, jittered point by point and by an affine, elastically deformed, and blurred at
its edge by two random Gaussian blurs; a blend ratio from {0.25, 0.5, 0.75, 1, 1, 1} scales it.
Either the source or the target is altered (as in the paper): the target returned as `real` is
the crop the blend is made on, so `fake` differs from `real` only where `mask` is above zero.

Everything is drawn from one numpy Generator: the same seed gives the same blend.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.face_geometry import face_outline

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class SelfBlend:
    real: np.ndarray  # uint8 HxWx3: the target the face was blended onto
    fake: np.ndarray  # uint8 HxWx3: the blend
    mask: np.ndarray  # float32 HxW in [0, 1]: the blend's weight of the source at each pixel


def hull_mask(landmarks: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The face hull of `landmarks` at a random size, its points and whole jittered (uint8 0/1)."""
    outline = face_outline(landmarks)
    center = outline.mean(0)
    face_size = float(np.ptp(outline, axis=0).max())
    linear = np.eye(2) * rng.uniform(0.85, 1.1) + rng.uniform(-0.08, 0.08, (2, 2))
    outline = (outline - center) @ linear.T + center + rng.uniform(-0.03, 0.03, 2) * face_size
    outline = outline + rng.normal(0, 0.02 * face_size, outline.shape)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    return mask


def elastic_deform(mask: np.ndarray, rng: np.random.Generator, alpha: float = 0.08, sigma: float = 0.06) -> np.ndarray:
    """`mask` moved by a smooth random displacement field (`alpha`, `sigma` in image sizes)."""
    height, width = mask.shape
    size = max(height, width)
    field = rng.uniform(-1, 1, (2, height, width)).astype(np.float32)
    field = np.stack([cv2.GaussianBlur(f, (0, 0), sigma * size) for f in field])
    field *= alpha * size / max(float(np.abs(field).max()), 1e-6)
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(
        mask, grid_x + field[0], grid_y + field[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def soften_edge(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two Gaussian blurs of random odd sizes (the second only ever widens the edge), back in [0, 1];
    what was outside the hard mask's reach before the blurs can become slightly positive."""
    size = max(mask.shape)
    soft = mask.astype(np.float32)
    for _ in range(2):
        kernel = 2 * int(rng.integers(max(1, size // 40), max(2, size // 12))) + 1
        soft = cv2.GaussianBlur(soft, (kernel, kernel), 0)
    peak = float(soft.max())
    return soft / peak if peak > 0 else soft


def face_blend_mask(landmarks: np.ndarray, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The deformed, softened face mask (float32 in [0, 1]) before the blend ratio."""
    hard = hull_mask(landmarks, shape, rng).astype(np.float32)
    deformed = (elastic_deform(hard, rng) > 0.5).astype(np.float32)
    if not deformed.any():  # a deformation can push a tiny hull off the image; the hull then stays
        deformed = hard
    return soften_edge(deformed, rng)


def shift_colours(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of: an RGB shift, an HSV shift, a brightness-contrast change (float32 out)."""
    choice = int(rng.integers(3))
    image = image.astype(np.float32)
    if choice == 0:
        return image + rng.uniform(-20, 20, 3).astype(np.float32)
    if choice == 1:
        hsv = cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.3, 0.3) * 10) % 180
        hsv[..., 1:] = hsv[..., 1:] + rng.uniform(-0.3, 0.3, 2) * 30
        return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    alpha, beta = 1 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1) * 255
    return image * alpha + beta


def change_sharpness(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down- and up-scaling (a source of lower resolution) or sharpening (float32 in and out)."""
    height, width = image.shape[:2]
    if rng.random() < 0.5:
        scale = rng.uniform(0.25, 0.5)
        small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), cv2.INTER_AREA)
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    amount = rng.uniform(0.2, 0.5)
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
    return image + amount * (image - blurred)


def source_target_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's source-target augmentation, uint8 out: a colour change (p 0.8; an RGB shift, an
    HSV shift or a brightness-contrast change) and a sharpness change (p 0.5)."""
    out = image.astype(np.float32)
    if rng.random() < 0.8:
        out = shift_colours(out, rng)
    if rng.random() < 0.5:
        out = change_sharpness(out, rng)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def misalign(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small random affine: shift up to 3% of the size, scale 0.95 to 1/0.95 about the centre."""
    height, width = image.shape[:2]
    scale = rng.uniform(0.95, 1 / 0.95)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += rng.uniform(-0.03, 0.03, 2) * (width, height)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> SelfBlend:
    """A self-blended fake of the RGB crop `image` whose 5 landmarks (crop pixels) are `landmarks`."""
    image = np.ascontiguousarray(image)
    source, target = image, image
    if rng.random() < 0.5:
        source = source_target_augment(image, rng)
    else:
        target = source_target_augment(image, rng)
    source = misalign(source, rng)
    mask = face_blend_mask(np.asarray(landmarks, np.float64), image.shape[:2], rng)
    mask = mask * float(rng.choice(BLEND_RATIOS))
    alpha = mask[..., None]
    blended = source.astype(np.float32) * alpha + target.astype(np.float32) * (1 - alpha)
    fake = np.clip(blended, 0, 255).round().astype(np.uint8)
    fake[mask <= 0] = target[mask <= 0]  # exactly the target where the source has no weight
    return SelfBlend(real=target, fake=fake, mask=mask.astype(np.float32))
