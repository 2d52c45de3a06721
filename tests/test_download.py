"""inference/models/download.py against a real local server: a transfer is renamed into place only when
whole, resumes where it was cut, is fsynced, and never follows a redirect out of HTTPS."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import socket
import time

import pytest

from inference.models import download as downloads
from inference.models.download import DownloadError, download
from inference.models.download_checks import Expected, checkpoint_start_problem
from inference.models.download_transport import SpeedLimit
from tests.http_server import INTERSTITIAL, PAYLOAD, Server, digest

pytest_plugins = ("tests.http_server",)  # its `server` and `tls_server` fixtures


def test_a_cut_download_resumes_where_it_stopped(server, tmp_path):
    server.files["/model"] = PAYLOAD
    server.plan["/model"] = [("close", 100_000)]
    assert download(f"{server.url}/model", tmp_path / "model") == digest(PAYLOAD)
    assert (tmp_path / "model").read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=100000-"], "the second request asked only for the rest"
    assert server.if_ranges == [None, Server.validators(PAYLOAD)["ETag"]], "if the file is still the same"
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


def cut_once(server, tmp_path, at: int = 100_000) -> None:
    """A download of /model cut at `at` bytes: model.part and its record (model.part.json) are left."""
    server.plan["/model"] = [("close", at)]
    with pytest.raises(DownloadError, match="cut after"):
        download(f"{server.url}/model", tmp_path / "model", attempts=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.part", "model.part.json"]


def test_a_part_left_by_an_earlier_run_is_judged_by_the_size_in_the_servers_416(server, tmp_path):
    server.files["/model"] = PAYLOAD
    cut_once(server, tmp_path)
    (tmp_path / "model.part").write_bytes(PAYLOAD + b"more")
    with pytest.raises(DownloadError, match="got 300004 bytes, expected 300000; the partial file was removed"):
        download(f"{server.url}/model", tmp_path / "model")
    assert list(tmp_path.iterdir()) == [], "a .part longer than the file is not put in place"
    cut_once(server, tmp_path)
    (tmp_path / "model.part").write_bytes(PAYLOAD)
    download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model").read_bytes() == PAYLOAD and server.ranges[-1] == "bytes=300000-"
    assert list(tmp_path.iterdir()) == [tmp_path / "model"], "the record went with the .part"


def test_a_416_that_states_no_size_starts_the_download_again(server, tmp_path):
    server.files["/model"] = PAYLOAD
    server.bare_416.add("/model")
    cut_once(server, tmp_path)
    (tmp_path / "model.part").write_bytes(PAYLOAD + b"junk")  # longer than the file: the server answers 416
    download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model").read_bytes() == PAYLOAD and server.ranges[-2:] == ["bytes=300004-", None]


def test_a_part_without_a_record_is_resumed_only_where_its_sha256_is_expected(server, tmp_path):
    server.files["/model"] = PAYLOAD
    (tmp_path / "model.part").write_bytes(PAYLOAD[:100_000])  # as an older fetch left it: no record
    download(f"{server.url}/model", tmp_path / "model", expected_sha256=digest(PAYLOAD))
    assert server.ranges == ["bytes=100000-"] and (tmp_path / "model").read_bytes() == PAYLOAD
    (tmp_path / "model").unlink()
    (tmp_path / "model.part").write_bytes(PAYLOAD[:100_000])
    download(f"{server.url}/model", tmp_path / "model")
    assert server.ranges[-1] is None, "no record and no hash: started again"


def test_a_part_recorded_for_another_address_is_started_again(server, tmp_path, caplog):
    server.files["/model"] = server.files["/elsewhere"] = PAYLOAD
    cut_once(server, tmp_path)
    with caplog.at_level(logging.WARNING, "inference.models.download"):
        download(f"{server.url}/elsewhere", tmp_path / "model")
    assert server.ranges[-1] is None and (tmp_path / "model").read_bytes() == PAYLOAD
    # The review: the log said "no record says which version of the file it holds", though one did.
    assert f"model.part: its record says it was cut from another address ({server.url}/model); starting again" in (
        caplog.text
    )


def test_a_part_recorded_with_no_strong_validator_says_so_when_started_again(server, tmp_path, caplog):
    """The record a fetch writes after an answer whose only validator is a weak ETag (W/...): no
    If-Range can be sent, so with no SHA-256 expected the download starts again, and says why."""
    server.files["/model"] = PAYLOAD
    (tmp_path / "model.part").write_bytes(PAYLOAD[:100_000])
    record = {"url": f"{server.url}/model", "size": len(PAYLOAD), "etag": None, "last_modified": None}
    (tmp_path / "model.part.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, "inference.models.download"):
        download(f"{server.url}/model", tmp_path / "model")
    assert server.ranges == [None] and (tmp_path / "model").read_bytes() == PAYLOAD
    assert "model.part: its record holds no strong ETag nor Last-Modified to resume it by" in caplog.text
    assert "no record says" not in caplog.text


def test_a_206_without_the_recorded_validator_starts_again_not_spliced(server, tmp_path):
    """The review's probe: cut at 100000 bytes of version A (ETag recorded); the file becomes B, of
    the same size; the server ignores If-Range and answers the range with a 206 stating no ETag.
    The old code appended B's tail to A's head (a splice, trusted on first use)."""
    second = PAYLOAD[:4] + PAYLOAD[:3:-1]  # another file of the same size and first bytes
    server.files["/model"] = PAYLOAD
    cut_once(server, tmp_path)
    server.files["/model"] = second
    server.bare_206.add("/model")
    assert download(f"{server.url}/model", tmp_path / "model") == digest(second)
    assert (tmp_path / "model").read_bytes() == second, "not A's first 100000 bytes and B's rest"
    assert server.ranges[-2:] == ["bytes=100000-", None], "the resume's answer was not used; started again"


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_a_page_answering_a_resume_is_refused_and_the_part_kept(server, tmp_path, content_type):
    """The review: a resume answered with a whole page (200) was refused saying "nothing was
    saved", yet the good 100000 bytes and their record had been deleted. Refused by its type, or
    by its first bytes; either way the partial file stays, and the next fetch resumes it."""
    server.files["/model"] = PAYLOAD
    cut_once(server, tmp_path)
    server.files["/model"], server.content_types["/model"] = INTERSTITIAL, content_type  # another ETag: 200
    expected = Expected(first_bytes_problem=checkpoint_start_problem)
    kept = f"nothing was saved \\(the 100000 bytes so far are kept in {re.escape(str(tmp_path / 'model.part'))}\\)"
    with pytest.raises(DownloadError, match=kept):
        download(f"{server.url}/model", tmp_path / "model", expected=expected)
    assert server.ranges[-1] == "bytes=100000-" and (tmp_path / "model.part").read_bytes() == PAYLOAD[:100_000]
    assert (tmp_path / "model.part.json").exists()
    server.files["/model"] = PAYLOAD
    del server.content_types["/model"]
    download(f"{server.url}/model", tmp_path / "model", expected=expected)
    assert server.ranges[-1] == "bytes=100000-" and (tmp_path / "model").read_bytes() == PAYLOAD


def test_a_part_whose_first_bytes_cannot_start_the_file_is_removed(server, tmp_path):
    server.files["/model"] = PAYLOAD
    (tmp_path / "model.part").write_bytes(INTERSTITIAL)  # saved by an older fetch that judged nothing
    expected = Expected(sha256=digest(PAYLOAD), first_bytes_problem=checkpoint_start_problem)
    download(f"{server.url}/model", tmp_path / "model", expected=expected)
    assert server.ranges == [None] and (tmp_path / "model").read_bytes() == PAYLOAD


@pytest.mark.parametrize(("free", "fits"), [(299_999, False), (300_000, True)])
def test_the_free_space_is_read_before_the_body_is_written(server, tmp_path, monkeypatch, free, fits):
    monkeypatch.setattr(downloads, "free_bytes", lambda folder: free)
    server.files["/model"] = PAYLOAD
    if fits:
        download(f"{server.url}/model", tmp_path / "model")
        return
    with pytest.raises(DownloadError, match="no room for .*300000 more bytes are needed and only 299999 are free"):
        download(f"{server.url}/model", tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_a_resume_needs_room_for_the_rest_only_and_keeps_the_part_when_there_is_none(server, tmp_path, monkeypatch):
    server.files["/model"] = PAYLOAD
    cut_once(server, tmp_path)
    monkeypatch.setattr(downloads, "free_bytes", lambda folder: 199_999)
    with pytest.raises(DownloadError, match=r"200000 more bytes .* \(the 100000 bytes so far are kept in"):
        download(f"{server.url}/model", tmp_path / "model")
    assert (tmp_path / "model.part").stat().st_size == 100_000
    monkeypatch.setattr(downloads, "free_bytes", lambda folder: 200_000)
    download(f"{server.url}/model", tmp_path / "model")
    assert server.ranges[-1] == "bytes=100000-" and (tmp_path / "model").read_bytes() == PAYLOAD


def test_a_trickle_over_https_is_cut_too(tls_server, tmp_path):
    """The watchdog shuts a TLS socket down under its reader as it does a plain one. Cut before
    the file's first bytes, nothing is saved and the message says so (the review: it spoke of a
    .part that did not exist)."""
    tls_server.files["/model"], tls_server.trickle["/model"] = PAYLOAD, (1.0, "body")
    began = time.monotonic()
    cut = r"cut \(slower than 1000 bytes/s over 0.5 s\) before any of the file was saved; run fetch again$"
    with pytest.raises(DownloadError, match=cut):
        download(f"{tls_server.url}/model", tmp_path / "model", attempts=1, speed=SpeedLimit(1000, 0.5))
    assert time.monotonic() - began < 3
    assert list(tmp_path.iterdir()) == []


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
