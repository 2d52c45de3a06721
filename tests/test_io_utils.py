"""Output files that survive: a folder replaced by atomic_dir is never lost, files whose loss costs
hours (checkpoints, a submission) reach the disk before they replace the old, and a full disk says
which file it could not write."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest
import torch

from common import cli
from common.io_utils import atomic_dir, atomic_path, recover_atomic_dirs, write_csv_atomic
from common.records import VideoRecord
from preprocess.diffs import Diffs
from preprocess.extract_crops import ExtractCrops
from preprocess.landmarks import Landmarks
from preprocess.outputs import crops_dir, diffs_dir, landmarks_dir
from preprocess.steps import load_config, run_step
from tests.conftest import run_until_killed
from training.loop.checkpoints import save_checkpoints


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


# A process that SIGKILLs itself at a stage of atomic_dir(FINAL): while the new folder is written,
# between setting the old folder aside and renaming the new one into place, or while deleting the
# old one. Run as `python -c KILLED_INSIDE_ATOMIC_DIR FINAL STAGE`.
KILLED_INSIDE_ATOMIC_DIR = """
import os, shutil, signal, sys
from pathlib import Path
from common.io_utils import atomic_dir

final, stage = Path(sys.argv[1]), sys.argv[2]
replace, renames = os.replace, []

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def replace_then_die(source, destination):
    renames.append(source)
    if len(renames) == 2:  # the old folder is aside, the new one not yet in place
        die()
    return replace(source, destination)

if stage == "between the renames":
    os.replace = replace_then_die
if stage == "deleting the old":
    shutil.rmtree = die
with atomic_dir(final) as folder:
    (folder / "0_0.png").write_bytes(b"new crop")
    if stage == "writing":
        die()
"""


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("stage", "old", "left", "killed", "after"),
    [  # killed: what the final folder held after the kill; after: after the next run's recovery
        ("writing", None, ["partial"], None, None),  # a first run: nothing to restore, the step makes it again
        ("writing", b"old crop", ["partial"], b"old crop", b"old crop"),
        ("between the renames", b"old crop", ["old", "partial"], None, b"old crop"),  # restored from .old
        ("deleting the old", b"old crop", ["old"], b"new crop", b"new crop"),
    ],
)
def test_what_a_killed_process_leaves_is_put_right_at_the_next_run(tmp_path, caplog, stage, old, left, killed, after):
    """Before: the hidden folders stayed for good, named nowhere, and killed between the renames
    the video's folder was gone while its old one lay aside (issue 28, item 18)."""
    final = tmp_path / "crops" / "video1"
    other = tmp_path / "crops" / ".video10.abcd1234.partial"  # another video's (another shard may be writing it)
    other.mkdir(parents=True)
    if old is not None:
        final.mkdir()
        (final / "0_0.png").write_bytes(old)
    run_until_killed(KILLED_INSIDE_ATOMIC_DIR, [str(final), stage])
    leftovers = [name for name in _hidden(final.parent) if name.startswith(".video1.")]
    assert [name.rsplit(".", 1)[-1] for name in leftovers] == left
    assert (_contents(final) if final.exists() else None) == (None if killed is None else {"0_0.png": killed})

    with caplog.at_level(logging.WARNING, logger="common.io_utils"):
        counts = recover_atomic_dirs([final])
    assert _hidden(final.parent) == [other.name], "this video's leftovers are gone, another video's kept"
    if after is None:
        assert not final.exists()
    else:
        assert _contents(final) == {"0_0.png": after}
    restored = stage == "between the renames"
    assert counts == {"restored": int(restored), "removed": len(left) - restored}
    messages = [record.getMessage() for record in caplog.records]
    if restored:
        assert (
            f"{final}: restored from {leftovers[0]}, where a run killed while replacing it had set it aside" in messages
        )
    swept = [m for m in messages if "removed" in m]
    assert len(swept) == 1 and swept[0].startswith(
        f"{final.parent}: removed {len(left) - restored} folders that killed"
    )


def test_a_step_puts_right_what_its_killed_run_left_before_it_looks_at_what_is_done(tmp_path, caplog):
    """The real step: extract_crops killed between the renames finds the video's crops again (and
    skips it as done), its leftovers swept."""
    final = crops_dir(tmp_path, "video1")
    final.mkdir(parents=True)
    (final / "0_0.png").write_bytes(b"old crop")
    run_until_killed(KILLED_INSIDE_ATOMIC_DIR, [str(final), "between the renames"])
    assert not final.exists()
    record = VideoRecord("video1", tmp_path / "video1.mp4", 0, None, "video1", "part0")
    step = ExtractCrops(output_dir=tmp_path, records=[record], config=load_config())
    with caplog.at_level(logging.WARNING):
        counts = run_step(step)
    assert counts["skipped"] == 1 and _contents(final) == {"0_0.png": b"old crop"}
    assert _hidden(final.parent) == []
    assert "restored from" in caplog.text and "removed 1 folders" in caplog.text


@pytest.mark.parametrize("step_class", [ExtractCrops, Landmarks, Diffs])
def test_each_step_names_the_folders_it_writes_whole(tmp_path, step_class):
    record = VideoRecord("v", tmp_path / "v.mp4", 1, "o", "o", "part0")
    folders = {ExtractCrops: crops_dir, Landmarks: landmarks_dir, Diffs: diffs_dir}
    step = step_class(output_dir=tmp_path, records=[record], config=load_config())
    assert step.output_folders(record) == [folders[step_class](tmp_path, "v")]


def test_atomic_dir_folders_get_the_mode_mkdir_would_give(tmp_path):
    """Crop folders came out drwx------ (mkdtemp's 0700) whatever the umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    with atomic_dir(tmp_path / "video1") as folder:
        (folder / "0_0.png").write_bytes(b"crop")
    assert (tmp_path / "video1").stat().st_mode & 0o777 == 0o777 & ~mask
