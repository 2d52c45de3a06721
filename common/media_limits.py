"""The caps on photos and videos from outside, and the one-line reasons a file over one is refused
(checked from headers by common.video_io.check_media; flags in inference/models/model_options.py)."""

from __future__ import annotations

from dataclasses import dataclass

# The caps on media from outside. A video frame's width x height: DCI 4K (4096x2160) passes, and
# 32 decoded frames at the cap hold ~850 MB. A photo: a 24 MP camera's passes, a 6000x6000 does
# not. Frames as the container states them: 10 minutes at 60 fps.
MAX_VIDEO_PIXELS = 4096 * 2160
MAX_PHOTO_PIXELS = 25_000_000
MAX_FRAMES = 36_000


@dataclass(frozen=True)
class MediaLimits:
    """How large a photo or video from outside may be (command-line flags in inference/models/model_options.py)."""

    max_pixels: int = MAX_VIDEO_PIXELS  # width x height of a video frame
    max_photo_pixels: int = MAX_PHOTO_PIXELS  # width x height of a photo
    max_frames: int = MAX_FRAMES  # a video's stated frame count (unknown, 0, is not checked)

    def too_large(self, width: int, height: int, photo: bool) -> str | None:
        """Why a frame of this size is refused, or None."""
        cap, what, flag = (
            (self.max_photo_pixels, "a photo", "--max-photo-pixels")
            if photo
            else (self.max_pixels, "a video frame", "--max-pixels")
        )
        if width * height <= cap:
            return None
        return (
            f"{width}x{height} pixels ({_megapixels(width * height)}), more than the {_megapixels(cap)} "
            f"{what} may have here (raise it with {flag})"
        )

    def too_long(self, frame_count: int) -> str | None:
        """Why a video of this many stated frames is refused, or None."""
        if frame_count <= self.max_frames:
            return None
        return (
            f"{frame_count} frames, more than the {self.max_frames} a video may have here (raise it with --max-frames)"
        )


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g} MP" if pixels >= 100_000 else f"{pixels} pixels"
