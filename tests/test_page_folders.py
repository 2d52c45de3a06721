"""The page's temporary folders (inference/serving/page_folders.py): what a page killed mid-check left is
removed by the next, and nothing else is (the page at start: test_app_main.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

import pytest

from inference.serving import page_folders
from inference.serving.page_folders import LEFTOVER, gradio_cache, leftovers, pid_namespace, sweep_leftovers
from tests.conftest import run_until_killed

# A page killed mid-check: its private copy of the upload and a heatmap, and Gradio's copy of the
# upload in the page's own cache, when the kernel's SIGKILL ends it.
KILLED_MID_CHECK = """
import os, signal, sys, tempfile
from pathlib import Path

tempfile.tempdir = sys.argv[1]
from inference.serving.page_folders import check_folder, gradio_cache

folder = check_folder()  # as the page's check holds it
check = Path(folder.name)
(check / "clip.mp4").write_bytes(b"the upload")
(check / "explanation" / "clip.mp4").mkdir(parents=True)
(check / "explanation" / "clip.mp4" / "face1_frame3.jpg").write_bytes(b"a heatmap")
with gradio_cache() as cache:
    (cache / "clip.mp4").write_bytes(b"Gradio's copy of the upload")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_page_leftovers(folder: Path) -> list[Path]:
    """What a page killed mid-check leaves in `folder`, as it leaves them (its two folders)."""
    run_until_killed(KILLED_MID_CHECK, [str(folder)])
    left = sorted(folder.iterdir())
    assert [path.name.split("-")[1] for path in left] == ["check", "page"], left
    return left


def test_what_a_killed_page_left_is_removed_and_said(tmp_path, caplog):
    left = killed_page_leftovers(tmp_path)
    with caplog.at_level("INFO", logger="inference.serving.page_folders"):
        assert sweep_leftovers(tmp_path) == left
    assert list(tmp_path.iterdir()) == []
    for path, files in zip(left, (2, 1), strict=True):
        assert f"removed {path} ({files} files), left by a page that was stopped mid-check" in caplog.text


def test_nothing_but_a_stopped_pages_own_folders_is_removed(tmp_path):
    host = socket.gethostname()
    dead = int(LEFTOVER.match(killed_page_leftovers(tmp_path)[0].name).group(1))
    kept = [
        tmp_path / f"deepfake-check-{os.getppid()}{_ns()}@{host}-running1",  # a running page's (the parent)
        tmp_path / f"deepfake-check-{dead}@another-machine-abcd1234",  # a temporary folder shared with it
        tmp_path / "deepfake-check-abcd1234",  # no process named
        tmp_path / f"photos-{dead}@{host}-abcd1234",  # not the page's
    ]
    for path in kept:
        path.mkdir()
    (tmp_path / f"deepfake-page-{dead}@{host}-file1234").write_text("a file, not a page's folder")
    kept.append(tmp_path / f"deepfake-page-{dead}@{host}-file1234")
    if os.geteuid() == 0:  # another user's folder (only root can make one here)
        theirs = tmp_path / f"deepfake-check-{dead}@{host}-theirs12"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        kept.append(theirs)
    assert len(sweep_leftovers(tmp_path)) == 2
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert leftovers(tmp_path) == []


def test_gradio_keeps_its_files_in_the_pages_own_folder_unless_told_where(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    with gradio_cache() as cache:
        assert os.environ["GRADIO_TEMP_DIR"] == str(cache) and cache.parent == tmp_path
        assert cache.name.startswith(f"deepfake-page-{os.getpid()}{_ns()}@{socket.gethostname()}-")
        (cache / "upload.mp4").write_bytes(b"an upload")
    assert "GRADIO_TEMP_DIR" not in os.environ and list(tmp_path.iterdir()) == []
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "chosen"))
    with gradio_cache() as cache:
        assert cache is None and os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "chosen")


@pytest.mark.parametrize("name", ["deepfake-check-12@host-abcd1234", "deepfake-page-12@my-host.lan-x_yz0123"])
def test_the_names_the_page_gives_are_the_names_it_sweeps(name):
    assert LEFTOVER.match(name).group(1) == "12"


def _ns() -> str:
    """The `.<ns>` part of this process's folder names ('' where it has no pid namespace)."""
    namespace = pid_namespace()
    return "" if namespace is None else f".{namespace}"


def _dead_pid(tmp_path: Path) -> int:
    return int(LEFTOVER.match(killed_page_leftovers(tmp_path)[0].name).group(1))


def test_folders_named_with_this_processs_own_pid_are_swept(tmp_path):
    """In a container the page is pid 1 at every restart: what the one the OOM killer ended left
    carries this page's own pid and was never swept. The sweep runs before the page makes its own."""
    own = tmp_path / f"deepfake-check-{os.getpid()}{_ns()}@{socket.gethostname()}-abcdefgh"
    own.mkdir()
    (own / "clip.mp4").write_bytes(b"an upload")
    assert sweep_leftovers(tmp_path) == [own]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(pid_namespace() is None, reason="no pid namespaces here")
def test_another_pid_namespaces_folders_are_kept(tmp_path):
    """Containers sharing the host's name (--uts=host, hostNetwork) and /tmp: a pid of another
    namespace says nothing here, and one page could delete another's live folders."""
    host, dead = socket.gethostname(), _dead_pid(tmp_path)
    ours = sweep_leftovers(tmp_path)
    assert len(ours) == 2 and all(f".{pid_namespace()}@" in path.name for path in ours)
    other = str(int(pid_namespace()) + 1)
    kept = [
        tmp_path / f"deepfake-check-{dead}.{other}@{host}-abcdefgh",  # another namespace's
        tmp_path / f"deepfake-page-{os.getpid()}.{other}@{host}-abcdefgh",  # its pid equal to ours
        tmp_path / f"deepfake-check-{dead}@{host}-abcdefgh",  # no namespace named: an older page's
    ]
    for path in kept:
        path.mkdir()
    assert sweep_leftovers(tmp_path) == []
    assert sorted(tmp_path.iterdir()) == sorted(kept)


def test_a_pid_too_large_is_passed_over_and_the_rest_swept(tmp_path):
    """`deepfake-check-99999999999999999999@<host>-abcdefgh` stopped the page at start:
    OverflowError from os.kill."""
    host = socket.gethostname()
    left = killed_page_leftovers(tmp_path)
    huge = tmp_path / f"deepfake-check-99999999999999999999{_ns()}@{host}-abcdefgh"
    huge.mkdir()
    assert sweep_leftovers(tmp_path) == left
    assert list(tmp_path.iterdir()) == [huge]


def test_a_folder_another_page_removes_while_this_one_looks_is_passed_over(tmp_path, monkeypatch, caplog):
    """Two pages starting together sweep the same folders: one's listing names a folder the other
    removes before it is looked at (stat: FileNotFoundError), or while its files are counted (rglob)."""
    left = killed_page_leftovers(tmp_path)
    real_scandir = os.scandir

    def listed_then_removed(path):
        if path != tmp_path:
            return real_scandir(path)
        with real_scandir(path) as entries:
            listed = list(entries)
        for entry in listed:
            shutil.rmtree(entry.path)
        return contextlib.nullcontext(iter(listed))

    monkeypatch.setattr(page_folders.os, "scandir", listed_then_removed)
    assert sweep_leftovers(tmp_path) == []
    monkeypatch.undo()

    left = killed_page_leftovers(tmp_path)
    real_is_file = Path.is_file

    def removed_while_counted(path):
        for folder in left:
            shutil.rmtree(folder, ignore_errors=True)
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", removed_while_counted)
    with caplog.at_level("WARNING", logger="inference.serving.page_folders"):
        assert sweep_leftovers(tmp_path) == []
    assert list(tmp_path.iterdir()) == [] and caplog.text == ""
