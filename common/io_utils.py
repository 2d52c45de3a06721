"""Writing output files safely: under a temporary name in the same folder, then renamed."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_process_umask()  # what open() would have made (mkstemp makes 0600)
DIR_MODE = 0o777 & ~_process_umask()  # what mkdir would have made (mkdtemp makes 0700)
# What atomic_dir leaves beside NAME when killed: .NAME.XXXXXXXX.partial (mkdtemp's random part
# has no dot) while writing, .NAME.XXXXXXXX.old (the old NAME set aside) while replacing.
LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<tag>[a-z0-9_]+)\.(?P<kind>partial|old)")

logger = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds. With
    `fsync`, the file's bytes reach the disk before the rename and the rename before returning
    (for files whose loss costs hours: checkpoints, a submission). An OSError that does not name
    a file (a full disk) names `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    try:
        with naming_errors(path, temporary):
            yield Path(temporary)
            if os.path.isfile(temporary):
                os.chmod(temporary, FILE_MODE)
                if fsync:
                    fsync_path(temporary)
            os.replace(temporary, path)
            if fsync:
                fsync_path(path.parent)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's data (or a folder's entries) to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def naming_errors(path: str | os.PathLike, *aliases: str | os.PathLike) -> Iterator[None]:
    """Re-raise an OSError that names no file, or names one of `aliases` (a temporary), as one
    naming `path`: `path: No space left on device` rather than a bare `[Errno 28]`."""
    try:
        yield
    except OSError as error:
        if error.strerror and (error.filename is None or str(error.filename) in {str(a) for a in aliases}):
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise


def write_json_atomic(path: str | os.PathLike, data, indent: int | None = 2, fsync: bool = False) -> None:
    with atomic_path(path, fsync) as temporary:
        temporary.write_text(json.dumps(data, indent=indent) + "\n")


def csv_text(rows: Iterable[dict], fieldnames: list[str]) -> str:
    """`rows` as a CSV file's text, header first (as csv writes it: \\r\\n line ends)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def write_csv_atomic(path: str | os.PathLike, rows: Iterable[dict], fieldnames: list[str], fsync: bool = False) -> None:
    with atomic_path(path, fsync) as temporary:
        temporary.write_text(csv_text(rows, fieldnames), encoding="utf-8", newline="")


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """A temporary folder next to `final` that becomes `final` only when the block succeeds. An
    old `final` is renamed aside (to a hidden sibling) before the new one is renamed into place,
    put back if that rename fails, and deleted only after it. A process killed inside leaves
    hidden folders beside `final`, and killed between the two renames no `final` but its old one
    aside: `recover_atomic_dirs` puts that right at the next run. The folder gets the mode mkdir
    would give (the umask's), not mkdtemp's 0700."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        os.chmod(temporary, DIR_MODE)
        yield temporary
        aside = None
        if final.exists():
            aside = final.parent / f"{temporary.name.removesuffix('.partial')}.old"
            os.replace(final, aside)
        try:
            os.replace(temporary, final)
        except BaseException:
            if aside is not None:
                os.replace(aside, final)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def recover_atomic_dirs(finals: Iterable[Path]) -> dict[str, int]:
    """Put right what processes killed inside `atomic_dir` left beside the folders `finals`: a
    final folder that is missing while its old one lies aside (killed between the two renames) is
    restored from that `.NAME.*.old`; every other `.NAME.*.partial` (killed while writing) and
    `.NAME.*.old` (killed before deleting it) is deleted. Only the names of `finals` are looked at,
    so that another shard's run writing its own videos beside them is left alone. A warning names
    each folder restored, and one per parent folder counts those deleted. Returns the counts."""
    wanted: dict[Path, set[str]] = defaultdict(set)
    for final in finals:
        wanted[Path(final).parent].add(Path(final).name)
    counts = {"restored": 0, "removed": 0}
    for parent, names in wanted.items():
        found: dict[str, list[tuple[str, Path]]] = defaultdict(list)
        try:
            with os.scandir(parent) as entries:
                for entry in entries:
                    match = LEFTOVER.fullmatch(entry.name)
                    if match and match["name"] in names and entry.is_dir(follow_symlinks=False):
                        found[match["name"]].append((match["kind"], Path(entry.path)))
        except FileNotFoundError:
            continue
        removed = []
        for name, leftovers in sorted(found.items()):
            final = parent / name
            aside = sorted((path for kind, path in leftovers if kind == "old"), key=lambda p: p.stat().st_mtime_ns)
            if aside and not final.exists():
                os.replace(aside[-1], final)
                logger.warning(
                    "%s: restored from %s, where a run killed while replacing it had set it aside",
                    final,
                    aside[-1].name,
                )
                counts["restored"] += 1
                leftovers = [(kind, path) for kind, path in leftovers if path != aside[-1]]
            for _, path in leftovers:
                shutil.rmtree(path)
                removed.append(path.name)
        if removed:
            counts["removed"] += len(removed)
            shown = ", ".join(removed[:3]) + (f" and {len(removed) - 3} more" if len(removed) > 3 else "")
            logger.warning(
                "%s: removed %d folders that killed runs left half made or set aside (%s)", parent, len(removed), shown
            )
    return counts
