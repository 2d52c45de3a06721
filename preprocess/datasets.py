"""Dataset adapters: every supported layout becomes a list of `VideoRecord`s.

Layouts:
  dfdc   DATA_ROOT/dfdc_train_part_K/{*.mp4, metadata.json}, metadata maps a file name to
         {"label": "REAL"|"FAKE", "split": ..., "original": "<file>.mp4"|null}

`python -m preprocess.datasets --root-dir R` prints what a dataset holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

logger = logging.getLogger("preprocess.datasets")

REAL, FAKE = 0, 1
DFDC_PART = re.compile(r"^dfdc_train_part_(\d+)$")


class DatasetError(ValueError):
    """Malformed dataset description; the message names the file and the entry."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a dataset.

    video: id, unique in the dataset (file name without suffix) and the name of its outputs.
    label: REAL (0) or FAKE (1). original: the id of the video a fake was made from, if known.
    group: videos of one group (an original and its fakes) always share a fold.
    source: where it came from: the DFDC part folder, or the manipulation method.
    """

    video: str
    path: Path
    label: int
    original: str | None
    group: str
    source: str

    @property
    def is_fake(self) -> bool:
        return self.label == FAKE


def safe_child(root: Path, name: str, described_in: Path) -> Path:
    """`root / name`, refusing names that are absolute or climb out of `root`."""
    pure = PurePosixPath(name.replace("\\", "/"))
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise DatasetError(f"{described_in}: entry '{name}' is not a plain file name inside {root}")
    return root / pure


def dfdc_part_number(folder: Path) -> int | None:
    match = DFDC_PART.match(folder.name)
    return int(match.group(1)) if match else None


def _read_dfdc_metadata(metadata_path: Path) -> dict:
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{metadata_path}: not readable JSON ({error})") from error
    if not isinstance(metadata, dict):
        raise DatasetError(f"{metadata_path}: expected an object mapping file names to entries")
    return metadata


def read_dfdc(root: Path) -> list[VideoRecord]:
    """Records of every video listed in dfdc_train_part_*/metadata.json that is on disk."""
    root = Path(root)
    parts = sorted((p for p in root.iterdir() if p.is_dir() and dfdc_part_number(p) is not None), key=dfdc_part_number)
    if not parts:
        raise DatasetError(f"{root}: no dfdc_train_part_K folders")
    records: list[VideoRecord] = []
    seen: dict[str, Path] = {}
    for part in parts:
        metadata_path = part / "metadata.json"
        if not metadata_path.is_file():
            raise DatasetError(f"{metadata_path}: missing (every DFDC part has one)")
        for name, entry in _read_dfdc_metadata(metadata_path).items():
            path = safe_child(part, name, metadata_path)
            if not isinstance(entry, dict) or entry.get("label") not in ("REAL", "FAKE"):
                raise DatasetError(f"{metadata_path}: entry '{name}': label must be REAL or FAKE, got {entry!r}")
            original = entry.get("original")
            if entry["label"] == "FAKE":
                if not isinstance(original, str) or not original:
                    raise DatasetError(f"{metadata_path}: entry '{name}': a FAKE needs its original's file name")
                safe_child(part, original, metadata_path)
            video = Path(name).stem
            if video in seen:
                raise DatasetError(f"{metadata_path}: entry '{name}' is listed again (first in {seen[video]})")
            seen[video] = metadata_path
            if not path.is_file():
                logger.warning("%s: listed in %s but not on disk, skipped", path, metadata_path)
                continue
            original_id = Path(original).stem if entry["label"] == "FAKE" else None
            records.append(
                VideoRecord(
                    video=video,
                    path=path,
                    label=FAKE if entry["label"] == "FAKE" else REAL,
                    original=original_id,
                    group=original_id or video,
                    source=part.name,
                )
            )
    return records


LAYOUTS = {"dfdc": read_dfdc}


def detect_layout(root: Path) -> str:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if any(dfdc_part_number(p) is not None for p in root.iterdir() if p.is_dir()):
        return "dfdc"
    raise DatasetError(f"{root}: layout not recognised (expected dfdc_train_part_K folders with metadata.json)")


def load_dataset(root: Path, layout: str | None = None) -> list[VideoRecord]:
    layout = layout or detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout '{layout}'; choose one of {', '.join(LAYOUTS)}")
    return LAYOUTS[layout](Path(root))


def summarize(records: list[VideoRecord]) -> dict:
    ids = {record.video for record in records}
    missing_originals = sorted({r.original for r in records if r.is_fake and r.original not in ids})
    return {
        "videos": len(records),
        "real": sum(not r.is_fake for r in records),
        "fake": sum(r.is_fake for r in records),
        "groups": len({r.group for r in records}),
        "by_source": dict(sorted(Counter(r.source for r in records).items())),
        "fakes_without_original": sum(r.is_fake and r.original not in ids for r in records),
        "missing_originals": missing_originals,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.datasets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root-dir", type=Path, required=True, help="dataset root")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default=None, help="default: detected")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        layout = args.layout or detect_layout(args.root_dir)
        summary = summarize(load_dataset(args.root_dir, layout))
    except DatasetError as error:
        logger.error("%s", error)
        return 2
    logger.info(
        "%s (%s layout): %d videos, %d real, %d fake, %d groups",
        args.root_dir,
        layout,
        summary["videos"],
        summary["real"],
        summary["fake"],
        summary["groups"],
    )
    for source, count in summary["by_source"].items():
        logger.info("  %-24s %d videos", source, count)
    if summary["fakes_without_original"]:
        logger.info(
            "  %d fakes whose original is not in the dataset (their faces come from their own frames)",
            summary["fakes_without_original"],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
