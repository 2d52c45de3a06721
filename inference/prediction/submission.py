"""The final files of an inference.predict run: submission.csv (filename,label), errors.csv and
details.jsonl, each made and checked before any is written, then written whole, fsynced and renamed
into place."""

from __future__ import annotations

import json
import math
from pathlib import Path

from common.io_utils import atomic_path, csv_text


def write_outputs(
    scores: dict[str, float],
    errors: list[dict],
    details: list[dict],
    output: Path,
    errors_path: Path,
    details_path: Path,
) -> None:
    """The three files' contents made first, so that a row that cannot be written (a score that is
    not a probability, a value JSON cannot hold) is a ValueError naming the file and the video
    before any file is written; then each written whole, on the disk (fsynced), and renamed into
    place. An OSError names the file."""
    bad = [name for name in sorted(scores) if not (math.isfinite(scores[name]) and 0 <= scores[name] <= 1)]
    if bad:
        raise ValueError(f"{output}: the score of {bad[0]} is {scores[bad[0]]}, not a probability from 0 to 1")
    submission = csv_text(
        [{"filename": name, "label": f"{scores[name]:.6f}"} for name in sorted(scores)], ["filename", "label"]
    )
    errors_text = csv_text(sorted(errors, key=lambda row: row["filename"]), ["filename", "stage", "reason"])
    lines = []
    for row in sorted(details, key=lambda row: row["filename"]):
        try:
            lines.append(json.dumps(row, allow_nan=False))
        except ValueError as error:  # NaN or infinity somewhere in the row
            raise ValueError(f"{details_path}: the details of {row['filename']} cannot be written ({error})") from None
    for path, text in (
        (output, submission),
        (errors_path, errors_text),
        (details_path, "".join(f"{line}\n" for line in lines)),
    ):
        with atomic_path(path, fsync=True) as temporary:
            temporary.write_text(text, encoding="utf-8", newline="")  # the text as made: csv's \r\n kept
