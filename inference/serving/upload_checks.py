"""Why the page does not judge an upload, in one line naming it: a name that is no video or photo,
or more megabytes than --max-mb (`size_refusal`, from the file system, in the page itself); or,
from its headers and its keyframes' sizes (`media_refusal`), more pixels, frames or seconds than
the page takes. `media_refusal` decodes the keyframes of a video (common.video_io.check_media),
which takes as long as the video has keyframes: the page has it done by its judging process, under
the check's time limit (inference/serving/judge_worker.py), never in the page itself."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

from common.media_limits import MediaLimits
from common.records import MEDIA_SUFFIXES
from common.video_io import VideoReadError, check_media, is_image
from inference.models.model_options import media_limits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadLimits:
    """What `media_refusal` holds an upload to: sent with each check, so the page's settings rule."""

    media: MediaLimits
    max_seconds: float


def upload_limits(args: argparse.Namespace) -> UploadLimits:
    return UploadLimits(media_limits(args), args.max_seconds)


def size_refusal(path: Path, max_mb: float) -> str | None:
    """Why an upload is refused by its name or its size, or None."""
    if path.suffix.lower() not in MEDIA_SUFFIXES:
        return f"{path.name}: not a video or photo ({', '.join(sorted(MEDIA_SUFFIXES))})"
    megabytes = path.stat().st_size / 2**20
    if megabytes > max_mb:
        return f"{path.name}: {megabytes:.2g} MB, more than the {max_mb:g} MB this page accepts"
    return None


def media_refusal(path: Path, limits: UploadLimits) -> str | None:
    """Why an upload is refused by its headers and its keyframes (too many pixels, frames or
    seconds, not readable), or None; before any frame is decoded at a size over the caps."""
    try:
        info = check_media(path, limits.media)  # pixels, and frames as stated
    except VideoReadError as error:
        return f"{path.name}: {error.reason}"
    except Exception as error:  # whatever a hostile header does to a parser, the page says one line
        logger.warning("%s: reading its headers failed", path.name, exc_info=True)
        return f"{path.name}: not a readable video or photo ({type(error).__name__}: {error})"
    seconds = info.frame_count / info.fps if info.fps > 0 else 0.0
    if not is_image(path) and seconds > limits.max_seconds:
        return f"{path.name}: {seconds:.0f} s long, more than the {limits.max_seconds:g} s this page accepts"
    return None
