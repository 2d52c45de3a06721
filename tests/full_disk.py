"""A disk that fills up, for tests of what a command does then: writes into one folder get so many
bytes more, then the write that does not fit is cut short and fails with ENOSPC."""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path


class FullDisk:
    """Files written in `folder` whose name passes `affected` get `room` bytes more, then the write
    that does not fit is cut short and fails with ENOSPC, with no file name, as on a full disk."""

    def __init__(self, monkeypatch, folder: Path, room: float = float("inf"), affected=lambda name: True):
        self.folder, self.room, self.affected = folder.resolve(), room, affected
        real_open = builtins.open

        def open_on_this_disk(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            path = Path(os.fsdecode(file)) if not isinstance(file, int) else None
            if path and any(c in mode for c in "wax+") and path.resolve().parent == self.folder:
                return _Filling(handle, self) if self.affected(path.name) else handle
            return handle

        monkeypatch.setattr(builtins, "open", open_on_this_disk)
        monkeypatch.setattr(io, "open", open_on_this_disk)


class _Filling:
    def __init__(self, handle, disk: FullDisk):
        self._handle, self._disk = handle, disk

    def write(self, data):
        if len(data) > self._disk.room:
            self._handle.write(data[: int(self._disk.room)])
            self._handle.flush()
            self._disk.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self._handle.close()
