"""Output files that survive: a folder replaced by atomic_dir is never lost, files whose loss costs
hours (checkpoints, a submission) reach the disk before they replace the old, and a full disk says
which file it could not write."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from preprocess import cli
from preprocess.io_utils import atomic_dir, atomic_path, write_csv_atomic
from training.checkpoints import save_checkpoints


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_a_failed_rename_of_the_new_folder_leaves_the_old_one_in_place(tmp_path, monkeypatch):
    final = tmp_path / "crops" / "video1"
    final.mkdir(parents=True)
    (final / "0_0.png").write_bytes(b"old crop")
    replace = os.replace
    new_folder = []

    def replace_failing_for_the_new_folder(source, destination):
        if new_folder and Path(source) == new_folder[0]:
            raise OSError(errno.EIO, "Input/output error")  # a crash between taking the old away and putting the new
        return replace(source, destination)

    monkeypatch.setattr(os, "replace", replace_failing_for_the_new_folder)
    with pytest.raises(OSError, match="Input/output error"), atomic_dir(final) as folder:
        (folder / "0_0.png").write_bytes(b"new crop")
        new_folder.append(folder)
    assert _contents(final) == {"0_0.png": b"old crop"}, "the old folder is there again, whole"
    assert sorted(p.name for p in final.parent.iterdir()) == ["video1"], "nothing left aside or half made"


def test_atomic_dir_replaces_an_old_folder_whole(tmp_path):
    final = tmp_path / "video1"
    final.mkdir()
    (final / "stale.png").write_bytes(b"old")
    with atomic_dir(final) as folder:
        (folder / "0_0.png").write_bytes(b"new")
    assert _contents(final) == {"0_0.png": b"new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video1"]


class DiskLog:
    """Records, in order, the files fsynced and the renames, as (what, path name...)."""

    def __init__(self, monkeypatch):
        self.events: list[tuple[str, ...]] = []
        fsync, replace = os.fsync, os.replace

        def logged_fsync(descriptor):
            self.events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{descriptor}")).name))
            return fsync(descriptor)

        def logged_replace(source, destination):
            self.events.append(("replace", Path(source).name, Path(destination).name))
            return replace(source, destination)

        monkeypatch.setattr(os, "fsync", logged_fsync)
        monkeypatch.setattr(os, "replace", logged_replace)

    def synced_before_renamed(self, final: Path) -> bool:
        """Whether the temporary that became `final` was fsynced before the rename, and the folder after."""
        renames = [(i, e[1]) for i, e in enumerate(self.events) if e[0] == "replace" and e[2] == final.name]
        if not renames:
            return False
        at, temporary = renames[-1]
        synced = [i for i, e in enumerate(self.events) if e == ("fsync", temporary)]
        folder_synced = [i for i, e in enumerate(self.events) if e == ("fsync", final.parent.name) and i > at]
        return bool(synced) and synced[-1] < at and bool(folder_synced)


def test_a_runs_checkpoints_reach_the_disk_before_replacing_the_old(tmp_path, monkeypatch):
    log = DiskLog(monkeypatch)
    state = {"epoch": 3, "state_dict": {"w": torch.ones(2)}, "optimizer": {"state": {}}}
    save_checkpoints(tmp_path, "run_0_0", 3, state, improved=True, keep_every=2)
    for name in ("run_0_0_best.pt", "run_0_0_last.pt", "run_0_0_3.pt"):
        assert log.synced_before_renamed(tmp_path / name), (name, log.events)
    assert torch.load(tmp_path / "run_0_0_last.pt", weights_only=True)["epoch"] == 3


def test_fsync_is_asked_for_not_imposed(tmp_path, monkeypatch):
    log = DiskLog(monkeypatch)
    write_csv_atomic(tmp_path / "a.csv", [{"x": 1}], ["x"], fsync=True)
    assert log.synced_before_renamed(tmp_path / "a.csv"), log.events
    log.events.clear()
    write_csv_atomic(tmp_path / "b.csv", [{"x": 1}], ["x"])
    assert not any(event[0] == "fsync" for event in log.events), "plain outputs stay as fast as before"


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, capsys):
    def fill(handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a write to a full disk raises: no file name

    final = tmp_path / "submission.csv"

    def write():
        with atomic_path(final) as temporary, open(temporary, "w") as handle:
            fill(handle)

    assert cli.run(lambda argv: write(), []) == 2
    assert capsys.readouterr().err.strip() == f"error: {final}: No space left on device"
    assert list(tmp_path.iterdir()) == [], "no temporary left behind"
