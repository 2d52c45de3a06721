"""A partial download (NAME.part) and the record beside it (NAME.part.json): the URL, size, ETag
and Last-Modified of the answer whose bytes it holds, written before its first byte, so that a
resume, in this run or a later one, sends If-Range and never splices two versions of a file."""

from __future__ import annotations

import json
from pathlib import Path

from common.io_utils import atomic_path
from inference.models.download_checks import Validator, validator_read


def validator_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def read_validator(partial: Path) -> Validator | None:
    try:
        return validator_read(json.loads(validator_path(partial).read_text()))
    except (OSError, ValueError):
        return None


def discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    validator_path(partial).unlink(missing_ok=True)


def start_afresh(partial: Path, validator: Validator) -> None:
    """Remove the partial file and record the validator of the answer about to fill it (before
    its first byte, so that no bytes are ever on disk under another version's record)."""
    discard(partial)
    with atomic_path(validator_path(partial)) as temporary:
        temporary.write_text(json.dumps(validator.to_json()) + "\n")


def resume_problem(partial: Path, url: str, sha256_expected: bool) -> tuple[str | None, Validator | None]:
    """Why `partial` may not be resumed (None when it may), and its record. A resume is safe only
    where the server can say the file is unchanged (If-Range with the recorded validator: a strong
    ETag or a Last-Modified) or where the whole file's SHA-256 is expected (a splice would be
    caught); otherwise the download starts again."""
    recorded = read_validator(partial)
    if recorded is not None and recorded.url != url:
        return f"its record says it was cut from another address ({recorded.url})", None
    if (recorded and recorded.if_range()) or sha256_expected:
        return None, recorded
    if recorded is None:
        return "no record says which version of the file it holds, and no SHA-256 is expected", None
    return (
        "its record holds no strong ETag nor Last-Modified to resume it by (If-Range; a weak ETag cannot be "
        "used), and no SHA-256 is expected",
        recorded,
    )
