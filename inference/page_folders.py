"""The page's temporary folders (inference.app), named so that what a page killed mid-check leaves
(SIGKILL, a crash, the kernel's OOM killer) does not stay for good.

Each check judges a private copy of the upload in a folder `deepfake-check-<pid>@<host>-<random>`,
with its heatmaps and frames; and where GRADIO_TEMP_DIR is not set, Gradio keeps the uploads and
the images it shows in a folder `deepfake-page-<pid>@<host>-<random>`: <pid> is the page's process,
<host> its machine's name. The page deletes both when it ends; one killed cannot, and the next
page to start in the same temporary folder removes them (`sweep_leftovers`): folders named so, of
the user it runs as, made on this machine by a process that no longer runs. Nothing else: not
another user's, not another machine's (a temporary folder shared between containers), not a
running page's (a process id reused by another program keeps them until that program ends too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

CHECK = "deepfake-check"  # a check's private copy of the upload, its heatmaps and frames
GRADIO_CACHE = "deepfake-page"  # Gradio's uploads and shown images, where GRADIO_TEMP_DIR is not set
# tempfile ends a folder's name with 8 characters of its own
LEFTOVER = re.compile(rf"^(?:{CHECK}|{GRADIO_CACHE})-(\d+)@(.+)-[a-z0-9_]{{8}}$")


def _prefix(kind: str) -> str:
    return f"{kind}-{os.getpid()}@{socket.gethostname()}-"


def check_folder() -> tempfile.TemporaryDirectory:
    """A check's private folder, deleted when its `with` ends."""
    return tempfile.TemporaryDirectory(prefix=_prefix(CHECK))


@contextlib.contextmanager
def gradio_cache() -> Iterator[Path | None]:
    """Within it, Gradio's cache is a folder of this page's own (set as GRADIO_TEMP_DIR, which must
    be before Gradio is imported), removed at its end; None, and nothing changed, where
    GRADIO_TEMP_DIR is already set."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix=_prefix(GRADIO_CACHE)))
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop("GRADIO_TEMP_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def leftovers(folder: Path) -> list[Path]:
    """The folders in `folder` that pages of this user on this machine left when they were killed."""
    host, user = socket.gethostname(), os.geteuid()
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            named = LEFTOVER.match(entry.name)
            if not named or named.group(2) != host or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid == user and not _running(int(named.group(1))):
                found.append(Path(entry.path))
    return sorted(found)


def sweep_leftovers(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove the `leftovers` in `folder` (tempfile's folder by default), saying which in the log;
    the folders removed."""
    removed = []
    for path in leftovers(Path(folder or tempfile.gettempdir())):
        files = sum(1 for item in path.rglob("*") if item.is_file())
        try:
            shutil.rmtree(path)
        except OSError as error:
            logger.warning("%s: left by a page that was stopped, but could not be removed (%s)", path, error)
            continue
        logger.info("removed %s (%d files), left by a page that was stopped mid-check", path, files)
        removed.append(path)
    return removed
