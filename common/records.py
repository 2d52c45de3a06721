"""What every dataset layout is read into: one `VideoRecord` per video (or photo)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from common.cli import InputError
from common.video_io import IMAGE_SUFFIXES

REAL, FAKE = 0, 1


class DatasetError(InputError, ValueError):
    """Malformed dataset description; the message names the file and the entry."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    video: id, unique in the dataset (file name without suffix) and the name of its outputs.
    label: REAL (0) or FAKE (1). original: the id of the video a fake was made from, if known.
    group: videos of one group (an original and its fakes, or a dataset's own group, such as
    the DFDC preview's filmed person) always share a fold.
    source: where it came from: the DFDC part folder, or the manipulation method.
    split: train, valid or test where the dataset fixes its splits (folds then follow them).
    method: how a fake was made, where the dataset says (FF++'s method folder, a DFDC metadata
    entry's "method", a CSV's method column); None for reals and where unknown.
    identities: the people it shows where its file name says (preprocess/identities.py; a face
    swap shows two); the videos of one person always share a fold.
    """

    video: str
    path: Path
    label: int
    original: str | None
    group: str
    source: str
    split: str | None = None
    method: str | None = None
    identities: tuple[str, ...] = ()

    @property
    def is_fake(self) -> bool:
        return self.label == FAKE


def safe_child(root: Path, name: str, described_in: Path) -> Path:
    """`root / name`, refusing names that are absolute or climb out of `root`."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise DatasetError(f"{described_in}: entry '{name}' is not a plain file name inside {root}")
    return root / pure


VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
MEDIA_SUFFIXES = VIDEO_SUFFIXES | IMAGE_SUFFIXES


def _file_or_dangling_link(path: Path) -> bool:
    """A file, or a link to nothing: listed, so that reading it fails it by name (a row and an
    errors.csv line) instead of its dropping out of the count unsaid."""
    return path.is_file() or (path.is_symlink() and not path.exists())


def media_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The videos and photos in `folder` (and its subfolders if `recursive`), sorted; a link to
    nothing with a media name is listed too (reading it fails)."""
    files = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
    return sorted(p for p in files if p.suffix.lower() in MEDIA_SUFFIXES and _file_or_dangling_link(p))


def relative_id(root: Path, path: Path) -> str:
    """A video id from a path relative to the root: folders joined by '__', suffix dropped."""
    return "__".join(path.relative_to(root).with_suffix("").parts)
