"""inference/download.py against a real local server: a transfer is renamed into place only when
whole, resumes where it was cut, is fsynced, and never follows a redirect out of HTTPS."""

from __future__ import annotations

import errno
import os
import re
import socket

import pytest

from inference import download as downloads
from inference.download import DownloadError, download
from tests.http_server import PAYLOAD, digest

pytest_plugins = ("tests.http_server",)  # its `server` and `tls_server` fixtures


def test_a_cut_download_resumes_where_it_stopped(server, tmp_path):
    server.files["/model"] = PAYLOAD
    server.plan["/model"] = [("close", 100_000)]
    assert download(f"{server.url}/model", tmp_path / "model") == digest(PAYLOAD)
    assert (tmp_path / "model").read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=100000-"], "the second request asked only for the rest"
    assert not (tmp_path / "model.part").exists()


def test_a_reset_on_the_first_attempt_is_resumed_not_taken_as_the_whole_file(server, tmp_path):
    """The connection reset mid-body raises before the size is returned: the old code then knew no
    size and renamed the partial file into place as complete."""
    server.files["/model"] = PAYLOAD
    server.plan["/model"] = [("reset", 100_000)]
    download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model").read_bytes() == PAYLOAD
    assert len(server.ranges) == 2 and server.ranges[0] is None
    assert re.fullmatch(r"bytes=\d+-", server.ranges[1] or ""), "the second request resumed"


def test_a_download_cut_at_its_last_attempt_is_kept_for_the_next_fetch(server, tmp_path):
    server.files["/model"] = PAYLOAD
    server.plan["/model"] = [("close", 120_000)]
    with pytest.raises(DownloadError, match=r"cut after 120000 of 300000 bytes .*run fetch again to resume"):
        download(f"{server.url}/model", tmp_path / "model", attempts=1)
    assert not (tmp_path / "model").exists(), "nothing under the final name until the file is whole"
    assert (tmp_path / "model.part").stat().st_size == 120_000
    download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model").read_bytes() == PAYLOAD and server.ranges[-1] == "bytes=120000-"


def test_a_file_of_the_wrong_size_is_refused_and_removed(server, tmp_path):
    server.files["/model"] = PAYLOAD
    with pytest.raises(DownloadError, match=f"the server's file has {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 5}"):
        download(f"{server.url}/model", tmp_path / "model", expected_size=len(PAYLOAD) + 5)
    assert list(tmp_path.iterdir()) == []


def test_a_part_left_by_an_earlier_run_is_judged_by_the_size_in_the_servers_416(server, tmp_path):
    server.files["/model"] = PAYLOAD
    (tmp_path / "model.part").write_bytes(PAYLOAD + b"more")
    with pytest.raises(DownloadError, match="got 300004 bytes, expected 300000; the partial file was removed"):
        download(f"{server.url}/model", tmp_path / "model")
    assert list(tmp_path.iterdir()) == [], "a .part longer than the file is not put in place"
    (tmp_path / "model.part").write_bytes(PAYLOAD)
    download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model").read_bytes() == PAYLOAD and server.ranges == ["bytes=300004-", "bytes=300000-"]


def test_a_416_that_states_no_size_starts_the_download_again(server, tmp_path):
    server.files["/model"] = PAYLOAD
    server.bare_416.add("/model")
    (tmp_path / "model.part").write_bytes(PAYLOAD + b"junk")  # longer than the file: the server answers 416
    download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model").read_bytes() == PAYLOAD and server.ranges == ["bytes=300004-", None]


def test_the_part_is_fsynced_before_it_is_renamed_into_place(server, tmp_path, monkeypatch):
    server.files["/model"] = PAYLOAD
    events, fsync, replace = [], downloads.os.fsync, downloads.os.replace
    monkeypatch.setattr(
        downloads.os, "fsync", lambda fd: (events.append(("fsync", downloads.os.fstat(fd).st_ino)), fsync(fd))
    )
    monkeypatch.setattr(
        downloads.os, "replace", lambda a, b: (events.append(("replace", downloads.os.stat(a).st_ino)), replace(a, b))
    )
    download(f"{server.url}/model", tmp_path / "model")
    inode = (tmp_path / "model").stat().st_ino
    assert ("replace", inode) in events
    assert ("fsync", inode) in events[: events.index(("replace", inode))], events


def test_a_full_disk_is_an_error_naming_the_file_not_a_cut_connection(server, tmp_path, monkeypatch):
    def no_space(data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_disk(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)  # noqa: SIM115 (the caller closes it)
        if str(path).endswith(".part") and mode in ("wb", "ab"):
            handle.write = no_space
        return handle

    server.files["/model"] = PAYLOAD
    monkeypatch.setattr(downloads, "open", full_disk, raising=False)
    with pytest.raises(DownloadError, match=f"{tmp_path / 'model.part'}: cannot write \\(No space left on device\\)"):
        download(f"{server.url}/model", tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_a_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/nothing: the server answered HTTP 404"):
        download(f"{server.url}/nothing", tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_host_says_where_to_put_the_file(tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=f"cannot reach the host .*put it at {tmp_path / 'model'}$"):
        download(f"http://127.0.0.1:{port}/model", tmp_path / "model", timeout=2)


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        ("https://github.com/a", "https://objects.githubusercontent.com/b", True),
        ("http://example.org/a", "https://example.org/a", True),
        ("http://127.0.0.1:1/a", "http://127.0.0.1:1/b", True),
        ("https://github.com/a", "http://github.com/a", False),
        ("HTTPS://github.com/a", "HTTP://evil.example/a", False),
        ("https://github.com/a", "ftp://github.com/a", False),
        ("http://example.org/a", "ftp://example.org/a", False),
        ("http://example.org/a", "file:///etc/passwd", False),
    ],
)
def test_redirects_never_leave_https_nor_http(old, new, allowed):
    assert downloads.redirect_allowed(old, new) is allowed


# --- the command line, against the registry pointed at the local server --------------------------
