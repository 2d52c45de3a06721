"""Self-blended fakes (Shiohara & Yamasaki, CVPR 2022) as the paper's code makes them, from 5 landmarks.

A copy of a real crop (the source) is altered in colour and resolution and slightly misaligned,
then pasted back onto the crop (the target) under a soft face mask. What is left are the traces
every face swap leaves, a blend boundary and a source that does not quite match its target,
without any one method's fingerprints, so a model trained on them has no method to overfit.

Step by step, with the reference's numbers (github.com/mapooon/SelfBlendedImages, src/utils/sbi.py,
blend.py, funcs.py, with Face-Xray's random_get_hull, run on albumentations 1.x):

- the mask: one of the reference's hull kinds as far as 5 points place them (`hull_mask`);
- the source-target augmentation, on the source or else the target (p 0.5 each): an RGB shift
  of +-20 per channel (p 0.3), then always an HSV shift of +-0.3 levels per channel (on 8-bit HSV
  this moves a channel one level down when the draw is negative, as the reference's lookup tables
  truncate), then always brightness and contrast +-0.1, then always one of a down-up scaling by
  2 or 4 (nearest down, linear up) or a sharpening (alpha 0.2-0.5, lightness 0.5-1);
- the misalignment: one affine moves the source and the mask alike, scale 0.95-1/0.95 per axis,
  shift up to 3% of the reference's crop across and 1.5% down;
- an elastic deformation of the mask alone (alpha 50, sigma 7 px: about 1 px rms, 5-7 px at most
  over a whole crop);
- the soft edge (`soften_edge`): at 192-256 px per axis of the reference's crop, the mask is
  eroded by a square of 5-25 px (odd) and blurred by a Gaussian of 5-25 px (odd) and sigma
  5-45, so the edge lies mostly inside the hull; then the blend ratio, one of {0.25, 0.5, 0.75, 1, 1, 1}.

The reference's crop is the dlib 68-point box widened by half its width on each side, raised by
its height and lowered by 0.4 of it; `FaceExtent` places the same box from the 5 landmarks, so the
shifts and blurs are the reference's relative to the face. The reference deforms in the native
pixels of FaceForensics++ frames; here the same field is drawn for a face `REFERENCE_FACE_WIDTH`
wide and scaled to the crop's face. The target returned as `real` is the crop the blend is made
on, so `fake` differs from `real` only where `mask` is above zero. Everything is drawn from one
numpy Generator: the same seed gives the same blend.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from preprocess.faces.face_geometry import FACE_OUTLINE, TEMPLATE, face_outline, similarity_transform

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)

# The reference's Face-Xray hull kinds, as 5 points allow. Its dfl_full, components and a
# 68-point facehull all cover the face from the brows to the chin; its `extended` raises the brows
# by half their height over the eyes; a facehull of dlib's 81 points (3 in 4 draws keep them)
# reaches over the forehead. Four kinds drawn evenly make these 9/16, 4/16 and 3/16.
HULL_KINDS = ("face", "extended", "forehead")
HULL_ODDS = (9 / 16, 4 / 16, 3 / 16)
BROW_POINTS = slice(11, 16)  # FACE_OUTLINE's brow line
EXTENDED_BROW_RAISE = 0.09  # template units: half of brows (y 0.25) to upper eyelids (y 0.43)
# The 81-point model's 13 forehead points: an arc from temple to temple that peaks a third of the
# brow-to-chin height above the brows (y 0.0 on the template), near the hairline.
FOREHEAD_ARC = np.stack(
    [0.5 + 0.4 * np.cos(np.linspace(np.pi, 2 * np.pi, 13)), 0.38 + 0.38 * np.sin(np.linspace(np.pi, 2 * np.pi, 13))],
    axis=1,
)
# dlib's points follow each face's own jaw and brows; the template outline does not: a small
# per-point jitter (in face sizes) stands in for that variety.
OUTLINE_JITTER = 0.02

RGB_SHIFT_PROBABILITY = 0.3
RGB_SHIFT_LIMIT = 20.0
HSV_SHIFT_LIMIT = 0.3
BRIGHTNESS_LIMIT = 0.1
CONTRAST_LIMIT = 0.1
DOWNSCALE_FACTORS = (2, 4)
SHARPEN_ALPHA = (0.2, 0.5)
SHARPEN_LIGHTNESS = (0.5, 1.0)

MISALIGN_SCALE = (0.95, 1 / 0.95)
MISALIGN_SHIFT = (0.03, 0.015)  # of the reference crop's width and height

ELASTIC_ALPHA = 50.0
ELASTIC_SIGMA = 7.0
# The face width (jaw to jaw) the elastic field's pixels are meant for: a typical face in
# FaceForensics++'s 480p-1080p frames, where the reference deforms (an assumption; its face
# sizes vary with the video).
REFERENCE_FACE_WIDTH = 150.0

WORKING_SIZE = (192, 256)  # the soft edge is made at this many pixels per axis of the reference crop
EDGE_KERNEL = (5, 25)  # odd sizes of the erosion and of the blur
EDGE_BLUR_SIGMA = (5, 45)
# The elastic field and the soft edge are made at most this many times finer than the crop: for a
# small face the reference's pixels are finer than ours, and unbounded they took gigabytes.
MAX_WORKING_ZOOM = 4.0
MIN_FACE_WIDTH = 8.0  # crop pixels between the outline's sides: narrower landmarks place no face


@dataclass(frozen=True)
class SelfBlend:
    real: np.ndarray  # uint8 HxWx3: the target the face was blended onto
    fake: np.ndarray  # uint8 HxWx3: the blend
    mask: np.ndarray  # float32 HxW in [0, 1]: the blend's weight of the source at each pixel


@dataclass(frozen=True)
class FaceExtent:
    """The face's box as dlib's 68 points span it (jaw to jaw, brows to chin), in crop pixels."""

    left: float
    top: float
    width: float
    height: float

    @classmethod
    def of(cls, landmarks: np.ndarray) -> FaceExtent:
        outline = face_outline(landmarks)
        (left, top), (width, height) = outline.min(0), np.ptp(outline, axis=0)
        return cls(float(left), float(top), max(float(width), 1.0), max(float(height), 1.0))

    @property
    def reference_crop(self) -> tuple[float, float]:
        """Width and height of the crop the reference blends on (its crop_face with margin)."""
        return 2.0 * self.width, 2.4 * self.height

    @property
    def reference_centre(self) -> tuple[float, float]:
        """The centre of that crop, about which the reference scales the source."""
        return self.left + self.width / 2, self.top + 0.2 * self.height


def hull_outline(kind: str) -> np.ndarray:
    """The outline of a hull kind on the template's unit square."""
    if kind == "extended":
        outline = FACE_OUTLINE.copy()
        outline[BROW_POINTS, 1] -= EXTENDED_BROW_RAISE
        return outline
    if kind == "forehead":
        return np.vstack([FACE_OUTLINE, FOREHEAD_ARC])
    return FACE_OUTLINE


def hull_mask(
    landmarks: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, kind: str | None = None
) -> np.ndarray:
    """The convex hull of a face outline that `landmarks` place (uint8 0/1); `kind` one of
    HULL_KINDS, drawn by HULL_ODDS when None."""
    if kind is None:
        kind = HULL_KINDS[int(rng.choice(len(HULL_KINDS), p=HULL_ODDS))]
    matrix = similarity_transform(TEMPLATE, landmarks)
    points = hull_outline(kind) @ matrix[:, :2].T + matrix[:, 2]
    face_size = float(np.ptp(face_outline(landmarks), axis=0).max())
    points = points + rng.normal(0, OUTLINE_JITTER * face_size, points.shape)
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return mask


def _apply_lut(image: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """`levels` (0-255 mapped as floats) applied as the reference's uint8 lookup tables: clipped, truncated."""
    return cv2.LUT(image, np.clip(levels, 0, 255).astype(np.uint8))


def shift_rgb(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each channel shifted by its own draw within +-RGB_SHIFT_LIMIT levels."""
    shifts = rng.uniform(-RGB_SHIFT_LIMIT, RGB_SHIFT_LIMIT, 3)
    levels = np.arange(256, dtype=np.float32)
    channels = [_apply_lut(np.ascontiguousarray(image[..., c]), levels + shifts[c]) for c in range(3)]
    return np.stack(channels, axis=-1)


def shift_hsv(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue, saturation and value shifted within +-HSV_SHIFT_LIMIT levels of 8-bit HSV (hue 0-179)."""
    hue_shift, saturation_shift, value_shift = rng.uniform(-HSV_SHIFT_LIMIT, HSV_SHIFT_LIMIT, 3)
    hue, saturation, value = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    levels = np.arange(256, dtype=np.float64)
    hue = cv2.LUT(hue, np.mod(levels + hue_shift, 180).astype(np.uint8))
    saturation = _apply_lut(saturation, levels + saturation_shift)
    value = _apply_lut(value, levels + value_shift)
    return cv2.cvtColor(cv2.merge([hue, saturation, value]), cv2.COLOR_HSV2RGB)


def adjust_brightness_contrast(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Levels times 1 +- CONTRAST_LIMIT plus +-BRIGHTNESS_LIMIT of the full range."""
    contrast = 1 + rng.uniform(-CONTRAST_LIMIT, CONTRAST_LIMIT)
    brightness = rng.uniform(-BRIGHTNESS_LIMIT, BRIGHTNESS_LIMIT)
    return _apply_lut(image, np.arange(256, dtype=np.float32) * contrast + brightness * 255)


def downscale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down by 2 or 4 (nearest: every other pixel, aliasing kept) and back up (linear)."""
    factor = DOWNSCALE_FACTORS[int(rng.integers(len(DOWNSCALE_FACTORS)))]
    height, width = image.shape[:2]
    small_size = (max(1, int(width / factor)), max(1, int(height / factor)))
    small = cv2.resize(image, small_size, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def sharpen(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The identity blended (alpha) with a Laplacian sharpening whose centre is 8 + lightness;
    a lightness under 1 also darkens, by up to alpha * (1 - lightness)."""
    alpha = rng.uniform(*SHARPEN_ALPHA)
    lightness = rng.uniform(*SHARPEN_LIGHTNESS)
    kernel = np.full((3, 3), -alpha, np.float32)
    kernel[1, 1] = (1 - alpha) + alpha * (8 + lightness)
    return cv2.filter2D(image, -1, kernel)


def source_target_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's source-target augmentation of a uint8 RGB image: an RGB shift (p 0.3), an HSV
    shift, a brightness-contrast change, and a down-up scaling or a sharpening (one, p 0.5 each)."""
    out = np.ascontiguousarray(image, dtype=np.uint8)
    if rng.random() < RGB_SHIFT_PROBABILITY:
        out = shift_rgb(out, rng)
    out = shift_hsv(out, rng)
    out = adjust_brightness_contrast(out, rng)
    return downscale(out, rng) if rng.random() < 0.5 else sharpen(out, rng)


def misalignment(face: FaceExtent, rng: np.random.Generator) -> np.ndarray:
    """The 2x3 affine of the source: scaled per axis about the reference crop's centre, shifted."""
    scale_x, scale_y = rng.uniform(*MISALIGN_SCALE, 2)
    crop_width, crop_height = face.reference_crop
    shift_x, shift_y = rng.uniform(-1, 1, 2) * np.multiply(MISALIGN_SHIFT, (crop_width, crop_height))
    centre_x, centre_y = face.reference_centre
    return np.array(
        [
            [scale_x, 0.0, centre_x * (1 - scale_x) + shift_x],
            [0.0, scale_y, centre_y * (1 - scale_y) + shift_y],
        ]
    )


def misalign(
    image: np.ndarray, mask: np.ndarray, face: FaceExtent, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The source and its mask moved by one `misalignment`, so the mask stays on the moved face."""
    matrix = misalignment(face, rng)
    size = (image.shape[1], image.shape[0])
    # The reference fills the source's uncovered border with black; reflected here: the mask is 0 there.
    moved = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    moved_mask = cv2.warpAffine(mask, matrix, size, flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return moved, moved_mask


def elastic_deform(mask: np.ndarray, rng: np.random.Generator, pixel_scale: float = 1.0) -> np.ndarray:
    """`mask` moved by the reference's smooth random field (uniform noise, Gaussian sigma 7, times 50)
    drawn on a grid of `pixel_scale` crop pixels per cell and scaled to the crop."""
    height, width = mask.shape
    pixel_scale = max(pixel_scale, 1.0 / MAX_WORKING_ZOOM)
    grid = (max(1, round(height / pixel_scale)), max(1, round(width / pixel_scale)))
    fields = []
    for noise in rng.uniform(-1, 1, (2, *grid)).astype(np.float32):
        field = cv2.GaussianBlur(noise, (0, 0), ELASTIC_SIGMA, borderType=cv2.BORDER_REFLECT) * ELASTIC_ALPHA
        if grid != (height, width):
            field = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR) * pixel_scale
        fields.append(field)
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(mask, grid_x + fields[0], grid_y + fields[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)


def soften_edge(
    mask: np.ndarray, rng: np.random.Generator, reference_crop: tuple[float, float] | None = None
) -> np.ndarray:
    """The reference's blend mask (float32 in [0, 1]) from a hard one: at a working size of
    WORKING_SIZE pixels per axis of `reference_crop` (width, height in this mask's pixels; the
    whole mask when None), eroded by a square, blurred, and resized back. Zeros for an empty mask."""
    height, width = mask.shape
    crop_width, crop_height = reference_crop or (width, height)
    working_height, working_width = rng.integers(WORKING_SIZE[0], WORKING_SIZE[1] + 1, 2)
    working_size = (
        max(1, round(min(width * working_width / crop_width, MAX_WORKING_ZOOM * width))),
        max(1, round(min(height * working_height / crop_height, MAX_WORKING_ZOOM * height))),
    )
    odd_sizes = (EDGE_KERNEL[1] - EDGE_KERNEL[0]) // 2 + 1
    erosion, blur = (int(size) for size in EDGE_KERNEL[0] + 2 * rng.integers(odd_sizes, size=2))
    blur_sigma = float(rng.integers(EDGE_BLUR_SIGMA[0], EDGE_BLUR_SIGMA[1] + 1))
    working = cv2.resize(mask.astype(np.float32), working_size, interpolation=cv2.INTER_LINEAR)
    if not working.max() > 0:
        return np.zeros((height, width), np.float32)
    full = working >= working.max()
    # The reference blurs and keeps what stays at the peak: a pixel whose whole square is full.
    inner = cv2.erode(full.astype(np.uint8), np.ones((erosion, erosion), np.uint8))
    if not inner.any():  # a hull thinner than the square keeps its fullest pixels
        inner = full.astype(np.uint8)
    soft = cv2.GaussianBlur(inner.astype(np.float32), (blur, blur), blur_sigma)
    soft /= soft.max()
    return np.clip(cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR), 0, 1)


def self_blend(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> SelfBlend:
    """A self-blended fake of the RGB crop `image` whose 5 landmarks (crop pixels) are `landmarks`."""
    image = np.ascontiguousarray(image)
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"landmarks must be 5 finite (x, y) points, got {landmarks.tolist()}")
    face = FaceExtent.of(landmarks)
    if not face.width >= MIN_FACE_WIDTH:  # NaN too
        raise ValueError(f"landmarks span {face.width:.1f} px across: too small a face to self-blend")
    hull = hull_mask(landmarks, image.shape[:2], rng)
    source, target = image, image
    if rng.random() < 0.5:
        source = source_target_augment(image, rng)
    else:
        target = source_target_augment(image, rng)
    source, hull = misalign(source, hull, face, rng)
    hull = elastic_deform(hull, rng, face.width / REFERENCE_FACE_WIDTH)
    mask = soften_edge(hull, rng, face.reference_crop) * float(rng.choice(BLEND_RATIOS))
    alpha = mask[..., None]
    blended = source.astype(np.float32) * alpha + target.astype(np.float32) * (1 - alpha)
    fake = np.clip(blended, 0, 255).round().astype(np.uint8)
    fake[mask <= 0] = target[mask <= 0]  # exactly the target where the source has no weight
    return SelfBlend(real=target, fake=fake, mask=mask.astype(np.float32))
