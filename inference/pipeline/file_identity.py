"""What tells one file from another without reading it whole: its size and modification time and,
where a stale result would go unnoticed, the sha256 of its first MiB (a file copied over another
with its size and time kept). One helper for every cache of results keyed by files: the models and
videos a set's predictions were made from (inference/evaluation/evaluate_models.py), the models of a predict
run and each video a resumed run does not read again (inference/prediction/progress.py)."""

from __future__ import annotations

import hashlib
import os
import re

HEAD_BYTES = 1 << 20
SHA256 = re.compile(r"[0-9a-f]{64}")


def file_identity(path: str | os.PathLike, head: bool = False) -> dict:
    """{"bytes", "mtime_ns"} of the file at `path` (links followed), with `head` also "head_sha256"."""
    status = os.stat(path)
    identity = {"bytes": status.st_size, "mtime_ns": status.st_mtime_ns}
    if head:
        identity["head_sha256"] = head_sha256(path)
    return identity


def video_identity(path: str | os.PathLike) -> dict | None:
    """A scored file's size, time and first MiB's hash (`file_identity` with `head`), or None where
    it is gone: what a resumed predict run compares to tell a changed video."""
    try:
        return file_identity(path, head=True)
    except OSError:
        return None


def head_sha256(path: str | os.PathLike, size: int = HEAD_BYTES) -> str:
    """The sha256 of the first `size` bytes of a file (all of a smaller one)."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read(size)).hexdigest()


def is_identity(value) -> bool:
    """Whether `value` is a `file_identity(..., head=True)` as JSON reads it back."""

    def whole(number) -> bool:
        return isinstance(number, int) and not isinstance(number, bool) and number >= 0

    return (
        isinstance(value, dict)
        and set(value) == {"bytes", "mtime_ns", "head_sha256"}
        and whole(value["bytes"])
        and whole(value["mtime_ns"])
        and isinstance(value["head_sha256"], str)
        and SHA256.fullmatch(value["head_sha256"]) is not None
    )


def identity_changes(recorded: dict, path: str | os.PathLike) -> str | None:
    """How the file at `path` differs from its `recorded` identity (with head), or None where it
    does not: its size, its modification time, or else its first MiB (read only then)."""
    try:
        now = file_identity(path)
        changes = []
        if now["bytes"] != recorded["bytes"]:
            changes.append(f"{recorded['bytes']} bytes then, {now['bytes']} now")
        if now["mtime_ns"] != recorded["mtime_ns"]:
            changes.append("modified since")
        if not changes and head_sha256(path) != recorded["head_sha256"]:
            changes.append("its first MiB differs, size and time the same")
    except OSError as error:
        return f"cannot be read now ({error.strerror or error})"
    return "; ".join(changes) or None
