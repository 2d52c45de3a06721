"""The page's temporary folders (inference.app), named so that what a page killed mid-check leaves
(SIGKILL, a crash, the kernel's OOM killer) does not stay for good.

Each check judges a private copy of the upload in a folder `deepfake-check-<pid>.<ns>@<host>-<random>`,
with its heatmaps and frames; and where GRADIO_TEMP_DIR is not set, Gradio keeps the uploads and
the images it shows in a folder `deepfake-page-<pid>.<ns>@<host>-<random>`: <pid> is the page's
process, <ns> its pid namespace (the inode of /proc/self/ns/pid; the name has no `.<ns>` where there
is none, as on Windows or macOS), <host> its machine's name. The page deletes both when it ends; one
killed cannot, and the next page to start in the same temporary folder removes them
(`sweep_leftovers`, which the page runs before it makes folders of its own): folders named so, of the
user it runs as, made on this machine in this pid namespace by a process that no longer runs, or by
this process's pid (in a container the page is pid 1 at every restart: what the one before it left
carries the same pid). Nothing else: not another user's, not another machine's (a temporary folder
shared between containers), not another pid namespace's (containers sharing the host's name and
/tmp, whose pids say nothing here; a name without a namespace, as older pages wrote, counts as
another's where this one has one), not a running page's (a process id reused by another program
keeps them until that program ends too). A name whose pid is no pid, or a folder another page
removes while this one looks, is passed over.
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
LEFTOVER = re.compile(rf"^(?:{CHECK}|{GRADIO_CACHE})-(\d+)(?:\.(\d+))?@(.+)-[a-z0-9_]{{8}}$")


def pid_namespace() -> str | None:
    """This process's pid namespace (the inode of /proc/self/ns/pid), None where there is none."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None


def _prefix(kind: str) -> str:
    namespace = pid_namespace()
    return f"{kind}-{os.getpid()}{'' if namespace is None else '.' + namespace}@{socket.gethostname()}-"


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
    """Whether process `pid` runs, other than this one (whose pid a page restarted in a container
    reuses: pid 1); OverflowError for a pid too large to be one."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _user() -> int | None:
    """The user this process runs as; None where the system has no such ids (Windows)."""
    return os.geteuid() if hasattr(os, "geteuid") else None


def _left_by_a_stopped_page(entry: os.DirEntry, host: str, namespace: str | None, user: int | None) -> bool:
    named = LEFTOVER.match(entry.name)
    if not named or named.group(3) != host or named.group(2) != namespace:
        return False
    if not entry.is_dir(follow_symlinks=False):
        return False
    if user is not None and entry.stat(follow_symlinks=False).st_uid != user:
        return False
    return not _running(int(named.group(1)))


def leftovers(folder: Path) -> list[Path]:
    """The folders in `folder` that pages of this user on this machine, in this pid namespace, left
    when they were killed. One that cannot be judged (a pid too large to be one, a folder gone
    meanwhile) is passed over."""
    host, namespace, user = socket.gethostname(), pid_namespace(), _user()
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                if _left_by_a_stopped_page(entry, host, namespace, user):
                    found.append(Path(entry.path))
            except (OverflowError, OSError) as error:
                logger.debug("%s: passed over (%s)", entry.path, error)
    return sorted(found)


def sweep_leftovers(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove the `leftovers` in `folder` (tempfile's folder by default), saying which in the log;
    the folders removed."""
    removed = []
    for path in leftovers(Path(folder or tempfile.gettempdir())):
        try:
            files = sum(1 for item in path.rglob("*") if item.is_file())
            shutil.rmtree(path)
        except FileNotFoundError:  # another page starting beside this one removed it meanwhile
            continue
        except OSError as error:
            logger.warning("%s: left by a page that was stopped, but could not be removed (%s)", path, error)
            continue
        logger.info("removed %s (%d files), left by a page that was stopped mid-check", path, files)
        removed.append(path)
    return removed
