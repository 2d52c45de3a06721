"""Real-world distortions at five levels, applied to decoded RGB uint8 frames, deterministic by seed.

Why: a detector that only sees clean clips says nothing about how it holds up once a video has
been through what the internet does to it. These are the perturbations of DeeperForensics-1.0
(Jiang et al., CVPR 2020), read from EndlessSora/DeeperForensics-1.0 at commit 4f6ecffd:

- Level parameters: ``perturbation/add_distortion_to_video.py``, ``get_distortion_parameter``.
- Operations: ``perturbation/distortions.py``, one function each (named below).

==========  ==========================================  =============================  =================
name        what                                        reference function             levels 1..5
==========  ==========================================  =============================  =================
CS          chroma (Cb, Cr) scaled towards grey          ``color_saturation``           0.4 .3 .2 .1 0.0
CC          every channel multiplied, truncated          ``color_contrast``             .85 .725 .6 .475 .35
BW          8x8 grey (128) blocks at random places       ``block_wise``                 16 32 48 64 80
GNC         white Gaussian noise of that variance on     ``gaussian_noise_color``       .001 .002 .005
            the reference's normalised YCbCr                                           .01 .05
GB          ``cv2.GaussianBlur`` kernel k, sigma k/6     ``gaussian_blur``              7 9 13 17 21
resize      down by 1/f (``cv2.resize``, bilinear),      ``jpeg_compression`` (sic)     f = 2 3 4 5 6
            back up to the original size
VC          H.264 re-encode (libx264) at CRF             ``video_compression``          30 32 35 38 40
JPEG        true JPEG through ``cv2.imencode``           see below                      q = 25 18 15 10 7
==========  ==========================================  =============================  =================

Two departures from the reference, both deliberate:

- The reference's "JPEG" (``jpeg_compression``) does not JPEG-encode: it shrinks the frame by the
  level's factor and enlarges it back. That operation is kept exactly, under the honest name
  ``resize`` (so CS, CC, BW, GNC, GB, resize and VC are DeeperForensics-1.0's seven). ``JPEG``
  here is a real JPEG encode, at the qualities of ImageNet-C's ``jpeg_compression``
  (hendrycks/robustness, ``ImageNet-C/imagenet_c/imagenet_c/corruptions.py``: 25, 18, 15, 10, 7).
- BW: the reference places ``min(h, w) // 256 * param`` blocks, i.e. none at all on frames under
  256 px (most of the demo world). We use ``max(1, min(h, w) // 256) * param``: identical from
  256 px up, the level-1 block count of a 256 px frame below.

Everything else follows the reference, including its quirks: CS and CC truncate to uint8 (no
rounding), CS and GNC convert through OpenCV's float YCrCb (offset 0.5 on 0..255 values) and the
reference's [16, 235] / [16, 240] rescaling. The reference reads BGR frames with OpenCV; we hold
RGB, so colour conversions use OpenCV's RGB codes (same colours, not swapped channels).

Mixed: the reference has no mixed operation of its own. ``perturbation/README.md`` ("Mixed
distortions") says to run ``add_distortion_to_video.py`` several times on one video, using the meta
history "to avoid adding repeated distortions to a single video"; each run's ``--type`` and
``--level`` default to ``random``, and its meta file records a ``type:level`` per step, in the
order applied (``dataset/README.md``, "Lists"). Its dataset's mixed videos carry 2, 3 or 4
distortions (``dataset/README.md``, "Manipulated videos with mixed perturbations"), drawn from its
seven types (its ``--type`` offers CS CC BW GNC GB JPEG VC, whose "JPEG" is our ``resize``). So the
reference gives each step its own random level and no mixed video has one level. ``mixed_chain``
draws 2, 3 or 4 different types of ``DEEPERFORENSICS_SEVEN`` in random order (never the true
``JPEG``), each at a random level, or, given a level, every step at it: the robustness curve of
``mixed`` then has one level per point like the others (a departure, for that purpose).

VC: the reference runs ``ffmpeg -i in -crf C -y out`` on the whole video, i.e. libx264 at its
defaults (preset medium, macroblock-tree rate control, yuv420p). We do the same through PyAV on
the decoded frames, except that mbtree is off and x264 runs on one thread, so that the same frames
always give the same bytes: with mbtree on, the same 24x24 frames encoded twice in one test
process came out different now and then (as ``common/video_writer.py`` saw it with threads).
That costs 0.1 to 0.45 dB of PSNR against the reference's encode (docs/robustness.md). Odd frame
sizes are edge-padded to even and cropped back. predict's
sampled frames are re-encoded with the consecutive frames around them
(inference/distortions/frame_perturbation.py), not as a clip of their own: 32 frames 10 apart left the encoder
little to predict, 1.2 to 2 dB below the reference's PSNR.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction

import av
import cv2
import numpy as np

logger = logging.getLogger("inference.distortions.perturbations")

LEVELS = (1, 2, 3, 4, 5)

# add_distortion_to_video.py, get_distortion_parameter (DeeperForensics-1.0)
SATURATION_FACTORS = (0.4, 0.3, 0.2, 0.1, 0.0)
CONTRAST_FACTORS = (0.85, 0.725, 0.6, 0.475, 0.35)
BLOCKS_PER_256PX = (16, 32, 48, 64, 80)
NOISE_VARIANCES = (0.001, 0.002, 0.005, 0.01, 0.05)
BLUR_KERNELS = (7, 9, 13, 17, 21)
RESIZE_FACTORS = (2, 3, 4, 5, 6)  # the reference's 'JPEG' parameters
H264_CRFS = (30, 32, 35, 38, 40)
# ImageNet-C corruptions.py, jpeg_compression
JPEG_QUALITIES = (25, 18, 15, 10, 7)

BLOCK_SIZE = 8  # block_wise: width = 8
BLOCK_VALUE = 128  # block_wise: np.ones(...) * 128
H264_PRESET = "medium"  # ffmpeg's default for libx264, which the reference's command uses
MIXED_COUNTS = (2, 3, 4)  # dataset/README.md: end_to_end_mix_<j>_distortions, j = 2..4

Frame = np.ndarray


def level_parameter(values: Sequence, level: int):
    """The parameter of `level` (1..5) from a per-level table; refuses other levels."""
    if level not in LEVELS:
        raise ValueError(f"distortion level must be one of {LEVELS}, got {level!r}")
    return values[level - 1]


def _check_frame(frame: Frame) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 frame of shape (H, W, 3), got {frame.dtype} {frame.shape}")


def _truncate_to_uint8(values: np.ndarray) -> Frame:
    """The reference's ``astype(np.uint8)`` (truncation), with a clip so out-of-range stays defined."""
    return np.clip(values, 0, 255).astype(np.uint8)


# ---- colour space of distortions.py (bgr2ycbcr / ycbcr2bgr), on RGB frames ----


def rgb_to_reference_ycbcr(frame: Frame) -> np.ndarray:
    """float32 (Y, Cb, Cr) exactly as the reference's ``bgr2ycbcr``: OpenCV's float YCrCb of the
    0..255 values (chroma offset 0.5), Y mapped by (v * 219 + 16) / 255, chroma by (v * 224 + 16) / 255."""
    ycrcb = cv2.cvtColor(frame.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    ycbcr = ycrcb[:, :, (0, 2, 1)].astype(np.float32)
    ycbcr[:, :, 0] = (ycbcr[:, :, 0] * (235 - 16) + 16) / 255.0
    ycbcr[:, :, 1:] = (ycbcr[:, :, 1:] * (240 - 16) + 16) / 255.0
    return ycbcr


def reference_ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_reference_ycbcr` (the reference's ``ycbcr2bgr``), float32, unclipped."""
    ycbcr = ycbcr.astype(np.float32)
    ycbcr[:, :, 0] = (ycbcr[:, :, 0] * 255.0 - 16) / (235 - 16)
    ycbcr[:, :, 1:] = (ycbcr[:, :, 1:] * 255.0 - 16) / (240 - 16)
    ycrcb = np.ascontiguousarray(ycbcr[:, :, (0, 2, 1)], dtype=np.float32)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


# ---- the frame-wise distortions: (frame, level, rng) -> frame ----


def color_saturation(frame: Frame, level: int, rng: np.random.Generator | None = None) -> Frame:
    """CS: Cb and Cr pulled towards 0.5 by the level's factor (0 at level 5: grey), luma kept."""
    _check_frame(frame)
    factor = level_parameter(SATURATION_FACTORS, level)
    ycbcr = rgb_to_reference_ycbcr(frame)
    ycbcr[:, :, 1:] = 0.5 + (ycbcr[:, :, 1:] - 0.5) * factor
    return _truncate_to_uint8(reference_ycbcr_to_rgb(ycbcr))


def color_contrast(frame: Frame, level: int, rng: np.random.Generator | None = None) -> Frame:
    """CC: every value multiplied by the level's factor (< 1) and truncated."""
    _check_frame(frame)
    factor = np.float32(level_parameter(CONTRAST_FACTORS, level))
    return _truncate_to_uint8(frame.astype(np.float32) * factor)


def block_count(height: int, width: int, level: int) -> int:
    """BW's number of blocks: the level's count per 256 px of the shorter side (at least one 256)."""
    return max(1, min(height, width) // 256) * level_parameter(BLOCKS_PER_256PX, level)


def block_positions(height: int, width: int, level: int, rng: np.random.Generator) -> np.ndarray:
    """(top, left) of each BW block, uniform like the reference's ``random.randint(0, side - 1 - 8)``."""
    count = block_count(height, width, level)
    tops = rng.integers(0, height - BLOCK_SIZE, size=count)  # 0 .. height - 9 inclusive
    lefts = rng.integers(0, width - BLOCK_SIZE, size=count)
    return np.stack([tops, lefts], axis=1)


def block_wise(frame: Frame, level: int, rng: np.random.Generator) -> Frame:
    """BW: 8x8 blocks of grey 128 pasted at random places (overlaps allowed, as in the reference)."""
    _check_frame(frame)
    height, width = frame.shape[:2]
    if min(height, width) <= BLOCK_SIZE:
        raise ValueError(f"frame {width}x{height} too small for {BLOCK_SIZE}px blocks")
    out = frame.copy()
    for top, left in block_positions(height, width, level, rng):
        out[top : top + BLOCK_SIZE, left : left + BLOCK_SIZE] = BLOCK_VALUE
    return out


def noisy_normalised_ycbcr(frame: Frame, level: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) in the domain where GNC's variance is defined: ``bgr2ycbcr(img) / 255``."""
    variance = level_parameter(NOISE_VARIANCES, level)
    clean = rgb_to_reference_ycbcr(frame) / 255.0
    noisy = clean + np.sqrt(variance) * rng.standard_normal(clean.shape)
    return clean, noisy


def gaussian_noise_color(frame: Frame, level: int, rng: np.random.Generator) -> Frame:
    """GNC: white Gaussian noise of the level's variance on Y, Cb and Cr, back to RGB, clipped."""
    _check_frame(frame)
    _, noisy = noisy_normalised_ycbcr(frame, level, rng)
    return _truncate_to_uint8(reference_ycbcr_to_rgb(noisy * 255.0))


def gaussian_blur(frame: Frame, level: int, rng: np.random.Generator | None = None) -> Frame:
    """GB: ``cv2.GaussianBlur`` with a k x k kernel and sigma k / 6."""
    _check_frame(frame)
    kernel = level_parameter(BLUR_KERNELS, level)
    return cv2.GaussianBlur(frame, (kernel, kernel), kernel * 1.0 / 6)


def resize_down_up(frame: Frame, level: int, rng: np.random.Generator | None = None) -> Frame:
    """resize: the reference's ``jpeg_compression``: to (w // f, h // f) and back, bilinear both ways."""
    _check_frame(frame)
    factor = level_parameter(RESIZE_FACTORS, level)
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (max(1, width // factor), max(1, height // factor)))
    return cv2.resize(small, (width, height))


def encode_jpeg(frame: Frame, quality: int) -> bytes:
    """JPEG bytes of an RGB frame at `quality` (OpenCV encodes BGR, so the channels are swapped first)."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"JPEG encoding at quality {quality} failed")
    return encoded.tobytes()


def decode_jpeg(data: bytes) -> Frame:
    """RGB frame from JPEG bytes."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def jpeg_compression(frame: Frame, level: int, rng: np.random.Generator | None = None) -> Frame:
    """JPEG: encode and decode at the level's quality (ImageNet-C's 25, 18, 15, 10, 7)."""
    _check_frame(frame)
    return decode_jpeg(encode_jpeg(frame, level_parameter(JPEG_QUALITIES, level)))


DISTORTIONS: dict[str, Callable[[Frame, int, np.random.Generator], Frame]] = {
    "CS": color_saturation,
    "CC": color_contrast,
    "BW": block_wise,
    "GNC": gaussian_noise_color,
    "GB": gaussian_blur,
    "JPEG": jpeg_compression,
    "resize": resize_down_up,
}
"""The frame-wise distortions. "VC" (a whole clip) and "mixed" go through `perturb_clip`."""

CLIP_DISTORTIONS = ("VC",)
MIXED = "mixed"
ALL_DISTORTIONS = (*DISTORTIONS, *CLIP_DISTORTIONS)
"""Every single distortion."""
DEEPERFORENSICS_SEVEN = ("CS", "CC", "BW", "GNC", "GB", "resize", "VC")
"""The reference's seven (its "JPEG" being our ``resize``); `mixed_chain` draws from these."""


# ---- H.264 re-encode (VC) ----


def _pad_to_even(frame: Frame) -> Frame:
    height, width = frame.shape[:2]
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


class H264Encoder:
    """An in-memory mp4 of libx264 at `crf` (yuv420p, one thread, mbtree off: the same frames give
    the same bytes), fed a frame at a time: the encoder holds only its lookahead, so a whole video
    never sits in memory."""

    def __init__(self, crf: int, fps: float, preset: str = H264_PRESET):
        self.options = {"crf": str(crf), "preset": preset, "threads": "1", "x264-params": "mbtree=0"}
        self.rate = Fraction(fps).limit_denominator(1001)
        self.buffer = io.BytesIO()
        self.container = av.open(self.buffer, mode="w", format="mp4")
        self.stream = None
        self.frames = 0

    def add(self, frame: Frame) -> None:
        padded = _pad_to_even(frame)
        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate, options=self.options)
            self.stream.height, self.stream.width = padded.shape[:2]
            self.stream.pix_fmt = "yuv420p"
        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")))
        self.frames += 1

    def finish(self) -> bytes:
        """The mp4's bytes, once every frame is in; the encoder is closed."""
        if self.stream is None:
            self.container.close()
            raise ValueError("no frames to encode")
        self.container.mux(self.stream.encode())
        self.container.close()
        return self.buffer.getvalue()

    def close(self) -> None:  # without finishing: on an error part way
        self.container.close()


def encode_h264(frames: Sequence[Frame], crf: int, fps: float, preset: str = H264_PRESET) -> bytes:
    """mp4 bytes: libx264 at `crf`, yuv420p, one thread and mbtree off (same frames, same bytes)."""
    encoder = H264Encoder(crf, fps, preset)
    try:
        for frame in frames:
            encoder.add(frame)
    except BaseException:
        encoder.close()
        raise
    return encoder.finish()


def iter_decoded(data: bytes) -> Iterator[Frame]:
    """Each frame of an in-memory video in turn, as RGB uint8."""
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def decode_video(data: bytes) -> list[Frame]:
    """Every frame of an in-memory video, as RGB uint8."""
    return list(iter_decoded(data))


def reencode_h264(frames: Sequence[Frame], crf: int, fps: float, preset: str = H264_PRESET) -> list[Frame]:
    """The frames after a real H.264 encode at `crf` and decode, at their original size."""
    height, width = frames[0].shape[:2]
    decoded = decode_video(encode_h264(frames, crf, fps, preset))
    if len(decoded) != len(frames):
        raise RuntimeError(f"H.264 round trip gave {len(decoded)} frames for {len(frames)}")
    return [f[:height, :width] for f in decoded]


def video_compression(frames: Sequence[Frame], level: int, fps: float) -> list[Frame]:
    """VC: the clip re-encoded with H.264 at the level's CRF (30, 32, 35, 38, 40)."""
    for frame in frames:
        _check_frame(frame)
    return reencode_h264(frames, level_parameter(H264_CRFS, level), fps)


# ---- mixed chain and the clip-level entry point ----


def mixed_chain(rng: np.random.Generator, level: int | None = None) -> list[tuple[str, int]]:
    """2, 3 or 4 different distortions of DeeperForensics-1.0's seven in random order, each at a
    random level, or all at `level`. The distortions (which, how many, in what order) are drawn
    first and a given level draws nothing, so the same `rng` state gives the same distortions at
    every level: only their level changes."""
    count = int(rng.choice(MIXED_COUNTS))
    names = [DEEPERFORENSICS_SEVEN[i] for i in rng.choice(len(DEEPERFORENSICS_SEVEN), size=count, replace=False)]
    levels = [int(rng.integers(1, 6)) if level is None else level_parameter(LEVELS, level) for _ in names]
    return list(zip(names, levels, strict=True))


def apply_single(frames: Sequence[Frame], name: str, level: int, rng: np.random.Generator, fps: float) -> list[Frame]:
    """One named distortion on a clip; frame-wise ones draw from `rng` frame after frame."""
    if name == "VC":
        return video_compression(frames, level, fps)
    if name not in DISTORTIONS:
        raise ValueError(f"unknown distortion {name!r}; known: {(*ALL_DISTORTIONS, MIXED)}")
    distort = DISTORTIONS[name]
    return [distort(frame, level, rng) for frame in frames]


def distortion_steps(
    name: str, level: int | None, rng: np.random.Generator, chain_seed: int | None = None
) -> list[tuple[str, int]]:
    """The (name, level) steps of distortion `name`: itself, or for "mixed" a chain drawn from
    `chain_seed` (from `rng` where None; see `perturb_clip`)."""
    if name == MIXED:
        return mixed_chain(rng if chain_seed is None else np.random.default_rng(chain_seed), level)
    if name not in DISTORTIONS and name not in CLIP_DISTORTIONS:
        raise ValueError(f"unknown distortion {name!r}; known: {(*ALL_DISTORTIONS, MIXED)}")
    return [(name, level_parameter(LEVELS, level))]


def perturb_clip(
    frames: Sequence[Frame],
    name: str,
    level: int | None,
    seed: int,
    fps: float = 30.0,
    chain_seed: int | None = None,
) -> tuple[list[Frame], list[tuple[str, int]]]:
    """A clip's frames after distortion `name` at `level`, and the (name, level) steps applied.

    The only randomness is `numpy` Generators seeded with `seed` (the frames' noise and blocks) and,
    for "mixed", `chain_seed` (which distortions, how many, in what order; `seed` where None), so
    the same call always gives the same frames. A `chain_seed` that leaves out the level keeps a
    video's chain at every level. For "mixed", `level` None draws each step's level (the
    reference's way); a level puts every step at it.
    """
    rng = np.random.default_rng(seed)
    steps = distortion_steps(name, level, rng, chain_seed)
    out = list(frames)
    for step_name, step_level in steps:
        out = apply_single(out, step_name, step_level, rng, fps)
    logger.debug("perturbed %d frames with %s", len(out), steps)
    return out, steps


def perturbation_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (base seed, video id, name, level): same parts, same seed."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
