"""Released weights: the downloader against a local HTTP(S) server (resume after a reset or closed
connection, every attempt cut, short bodies with and without Content-Length, a wrong size or
SHA-256, redirects that would leave HTTPS, a 404, an unreachable host), fetch, list and verify of
a named ensemble through the command line, and its use by predict."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.server
import json
import logging
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import numpy as np
import pytest
import torch

from inference import download as downloads
from inference import weights
from inference.download import DownloadError, download
from inference.ensemble import ensemble_members
from inference.weights import NamedEnsemble, WeightFile
from training.zoo import create_model

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
OTHER = np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves `files` ({path: bytes}) with HTTP Range over HTTP/1.0. `plan[path]` lists how the
    next answers for a path end: ("close", n) sends n bytes of the body and closes the connection,
    ("reset", n) sends n bytes, lets the client read them, then resets the connection (TCP RST);
    an answer with no plan left is whole. `no_length` paths are answered whole, close-delimited and
    without Content-Length (Range ignored), as a plain HTTP/1.0 server does; `redirects[path]`
    answers 302 to that address. With `tls` (cert, key) it speaks HTTPS."""

    def __init__(self, tls: tuple | None = None):
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list[tuple[str, int]]] = {}
        self.no_length: set[str] = set()
        self.redirects: dict[str, str] = {}
        self.bare_416: set[str] = set()  # paths whose 416 states no size (no Content-Range)
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                requested = None if self.path in server.no_length else self.headers.get("Range")
                server.ranges.append(self.headers.get("Range"))
                start = int(requested.split("=")[1].rstrip("-")) if requested else 0
                if start >= len(body) > 0:
                    self.send_response(416)
                    if self.path not in server.bare_416:
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206 if requested else 200)
                if requested:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if self.path not in server.no_length:
                    self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                plan = server.plan.get(self.path)
                how, cut = plan.pop(0) if plan else (None, None)
                self.wfile.write(body[start:] if cut is None else body[start : start + cut])
                self.close_connection = True
                if how == "reset":
                    time.sleep(0.3)  # the client reads what was sent; then the connection is reset, not closed
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(downloads, "RETRY_PAUSE_S", 0.0, raising=False)  # no pause between attempts
    served = Server()
    yield served
    served.close()


@pytest.fixture
def tls_server(tmp_path_factory, monkeypatch):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate that the client trusts."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    subprocess.run([*command.split(), "-keyout", key, "-out", cert], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    served = Server(tls=(cert, key))
    yield served
    served.close()


def register(monkeypatch, *files: WeightFile) -> None:
    monkeypatch.setitem(weights.ENSEMBLES, "tiny", NamedEnsemble("tiny", "test models", tuple(files)))


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def served_pair(server, monkeypatch, cache):
    """Ensemble "tiny" of two files of random bytes (`a` and `b`), nothing pinned."""
    server.files.update({"/a": PAYLOAD, "/b": OTHER})
    files = [WeightFile(name, f"{server.url}/{name}", "resnet18", 64) for name in ("a", "b")]
    register(monkeypatch, *files)
    return files


def manifest(cache) -> dict:
    return json.loads((cache / "weights.json").read_text())


# --- the downloader ---------------------------------------------------------------------------


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


def test_fetch_records_each_hash_as_trusted_on_first_use_and_list_says_so(served_pair, cache, capsys, caplog):
    caplog.set_level(logging.INFO, logger="inference.weights")
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD and (cache / "b").read_bytes() == OTHER
    record = manifest(cache)
    assert record["a"]["sha256"] == digest(PAYLOAD) and record["a"]["trust"] == "trusted on first use"
    assert f"a: SHA-256 {digest(PAYLOAD)} recorded in weights.json, trusted on first use" in caplog.text
    capsys.readouterr()
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "tiny: test models; 2 of 2 files in" in out
    assert re.search(r"^  a: 300000 bytes; SHA-256 trusted on first use since \S+$", out, re.M), out


def test_list_tells_pinned_from_trusted_on_first_use_and_placed_by_hand(served_pair, cache, monkeypatch, capsys):
    a, b = served_pair
    c = WeightFile("c", "http://127.0.0.1:1/c", "resnet18", 64)
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b, c)
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  a: missing; SHA-256 pinned in the registry" in out
    assert "  b: missing; SHA-256 not pinned: trusted on first use when fetched" in out
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b)
    assert weights.main(["fetch", "tiny"]) == 0
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b, c)
    (cache / "c").write_bytes(b"by hand")
    assert weights.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "  a: 300000 bytes; SHA-256 pinned in the registry" in out
    assert re.search(r"  b: 200000 bytes; SHA-256 trusted on first use since", out)
    assert "  c: 7 bytes; placed by hand, SHA-256 unknown: run verify to record it" in out
    assert manifest(cache)["a"]["trust"] == "pinned"
    (cache / "weights.json").write_text(json.dumps({"b": {"size": 200_000, "sha256": digest(OTHER)}}))
    assert weights.main(["list"]) == 0  # a record written before sizes were checked
    assert "  b: 200000 bytes; SHA-256 trusted on first use (recorded by an older fetch" in capsys.readouterr().out


def test_every_attempt_cut_fails_keeps_the_part_and_the_next_fetch_resumes(served_pair, cache, server, capsys):
    server.plan["/a"] = [("reset", 50_000)] * 3
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert re.search(
        rf"error: {server.url}/a: the connection was cut after \d+ of 300000 bytes .*run fetch again", error
    )
    assert not (cache / "a").exists(), "a cut file is never renamed into place"
    assert 0 < (cache / "a.part").stat().st_size < len(PAYLOAD)
    assert not (cache / "weights.json").exists(), "nothing recorded"
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert re.search(r"BAD  a: missing \(\d+ bytes downloaded in a.part: run fetch\)", capsys.readouterr().out)
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD and not (cache / "a.part").exists()
    assert re.fullmatch(r"bytes=[1-9]\d*-", server.ranges[-2]), "the second fetch resumed /a"
    assert weights.main(["verify", "tiny", "--no-load"]) == 0


def test_a_short_body_with_content_length_on_every_attempt_is_not_put_in_place(served_pair, cache, server, capsys):
    server.plan["/a"] = [("close", 50_000)] * 3
    assert weights.main(["fetch", "tiny"]) == 2
    assert f"{server.url}/a: the connection was cut after 150000 of 300000 bytes" in capsys.readouterr().err
    assert not (cache / "a").exists() and (cache / "a.part").stat().st_size == 150_000
    assert server.ranges == [None, "bytes=50000-", "bytes=100000-"]


def test_a_body_of_unstated_size_is_refused_unless_the_registry_pins_it(
    served_pair, cache, server, monkeypatch, capsys
):
    """HTTP/1.0 without Content-Length: the body ends where the connection closes, so a cut one
    looks whole; the old code renamed it into place."""
    a, b = served_pair
    server.no_length.add("/a")
    server.plan["/a"] = [("close", 100_000)]
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert f"{server.url}/a: the server did not state the file's size" in error
    assert "the 100000 bytes received cannot be known to be whole" in error and "a.part" in error
    assert not (cache / "a").exists() and (cache / "a.part").stat().st_size == 100_000
    # Whole this time, but still of no stated size: still refused.
    (cache / "a.part").unlink()
    assert weights.main(["fetch", "tiny"]) == 2
    assert not (cache / "a").exists()
    # A pinned size: the short answer is retried (this server ignores Range) and the whole one taken.
    (cache / "a.part").unlink()
    register(monkeypatch, dataclasses.replace(a, size=len(PAYLOAD)), b)
    server.plan["/a"] = [("close", 100_000)]
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD
    # A pinned SHA-256 alone: taken when the bytes match it.
    (cache / "a").unlink()
    register(monkeypatch, dataclasses.replace(a, sha256=digest(PAYLOAD)), b)
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD


def test_a_wrong_pinned_hash_is_refused_and_nothing_put_in_place(served_pair, cache, monkeypatch, capsys):
    a, b = served_pair
    register(monkeypatch, dataclasses.replace(a, sha256=digest(OTHER)), b)
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert f"/a: the file's SHA-256 is {digest(PAYLOAD)}, not the {digest(OTHER)} pinned in the registry" in error
    assert not (cache / "a").exists() and not (cache / "a.part").exists()
    assert "a" not in (manifest(cache) if (cache / "weights.json").exists() else {})


def test_a_redownload_is_held_to_the_hash_recorded_on_first_use(served_pair, cache, server, capsys):
    assert weights.main(["fetch", "tiny"]) == 0
    (cache / "b").unlink()
    server.files["/b"] = OTHER[::-1]  # the same size, other bytes
    assert weights.main(["fetch", "tiny"]) == 2
    assert "recorded in weights.json on first use" in capsys.readouterr().err
    assert not (cache / "b").exists() and manifest(cache)["b"]["sha256"] == digest(OTHER)


def test_a_file_already_here_is_checked_before_it_is_accepted(served_pair, cache, monkeypatch, capsys):
    a, b = served_pair
    assert weights.main(["fetch", "tiny"]) == 0
    (cache / "a").write_bytes(PAYLOAD[:100_000])  # truncated after it was recorded
    assert weights.main(["fetch", "tiny"]) == 2
    assert (
        f"{cache / 'a'}: already here but 100000 bytes, 300000 when recorded in weights.json" in capsys.readouterr().err
    )
    # A truncated file placed by hand, with the size pinned in the registry.
    (cache / "weights.json").unlink()
    register(monkeypatch, dataclasses.replace(a, size=len(PAYLOAD)), b)
    assert weights.main(["fetch", "tiny"]) == 2
    assert "already here but 100000 bytes, the registry pins 300000; not accepted" in capsys.readouterr().err


def test_a_redirect_from_https_to_http_is_refused(served_pair, cache, server, tls_server, monkeypatch, capsys):
    a, b = served_pair
    tls_server.files["/b"] = OTHER
    tls_server.redirects["/a"] = f"{server.url}/a"
    register(
        monkeypatch,
        dataclasses.replace(a, url=f"{tls_server.url}/a"),
        dataclasses.replace(b, url=f"{tls_server.url}/b"),
    )
    assert weights.main(["fetch", "tiny"]) == 2
    error = capsys.readouterr().err
    assert f"error: {tls_server.url}/a: redirected to {server.url}/a, which is not HTTPS; refused" in error
    assert not (cache / "a").exists() and not (cache / "a.part").exists()
    assert server.ranges == [], "the plain-HTTP server was never asked"


def test_a_redirect_from_http_to_https_is_followed_and_to_ftp_refused(
    served_pair, cache, server, tls_server, monkeypatch
):
    a, b = served_pair
    tls_server.files["/a"] = PAYLOAD
    server.redirects["/up"] = f"{tls_server.url}/a"
    server.redirects["/ftp"] = "ftp://127.0.0.1:1/a"
    register(monkeypatch, dataclasses.replace(a, url=f"{server.url}/up"), b)
    assert weights.main(["fetch", "tiny"]) == 0
    assert (cache / "a").read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match=r"/ftp: redirected to ftp://127.0.0.1:1/a, which is not HTTPS"):
        download(f"{server.url}/ftp", cache / "c")


# --- real checkpoints: verify loads them --------------------------------------------------------


@pytest.fixture
def tiny_ensemble(server, monkeypatch, cache, tmp_path):
    """A named ensemble of two resnet18 checkpoints served by the local server."""
    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        path = tmp_path / f"source_{seed}.pt"
        torch.save(create_model("resnet18").state_dict(), path)
        server.files[f"/tiny_{seed}"] = path.read_bytes()
        files.append(WeightFile(f"tiny_{seed}", f"{server.url}/tiny_{seed}", "resnet18", 64))
    register(monkeypatch, *files)
    return cache


def test_fetch_verify_and_use_a_named_ensemble(tiny_ensemble, capsys):
    with pytest.raises(ValueError, match="2 of the 2 checkpoints of ensemble 'tiny' are missing.*fetch tiny"):
        ensemble_members("tiny")
    assert weights.main(["fetch", "tiny"]) == 0
    assert sorted(p.name for p in tiny_ensemble.iterdir()) == ["tiny_1", "tiny_2", "weights.json"]
    assert weights.main(["verify", "tiny"]) == 0
    assert capsys.readouterr().out.count(": SHA-256 trusted on first use since") == 2
    entries = ensemble_members("tiny")
    assert [(e["path"], e["encoder"], e["input_size"]) for e in entries] == [
        (tiny_ensemble / "tiny_1", "resnet18", 64),
        (tiny_ensemble / "tiny_2", "resnet18", 64),
    ]
    data = bytearray((tiny_ensemble / "tiny_2").read_bytes())
    data[-100] ^= 0xFF
    (tiny_ensemble / "tiny_2").write_bytes(bytes(data))
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert "BAD  tiny_2: SHA-256 differs" in capsys.readouterr().out
    (tiny_ensemble / "tiny_1").unlink()
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert "BAD  tiny_1: missing" in capsys.readouterr().out


def test_verify_hashes_files_placed_by_hand_and_trusts_them_on_first_use(tiny_ensemble, capsys):
    tiny_ensemble.mkdir()
    torch.save({"not": torch.zeros(2)}, tiny_ensemble / "tiny_1")
    torch.save(create_model("resnet18").state_dict(), tiny_ensemble / "tiny_2")
    hand = digest((tiny_ensemble / "tiny_2").read_bytes())
    assert weights.main(["verify", "tiny", "--no-load"]) == 0
    out = capsys.readouterr().out
    assert f"unchecked  tiny_2: placed by hand, SHA-256 {hand}: nothing pinned or recorded" in out
    assert not (tiny_ensemble / "weights.json").exists(), "--no-load checked nothing, so records nothing"
    assert weights.main(["verify", "tiny"]) == 2
    out = capsys.readouterr().out
    assert "BAD  tiny_1:" in out
    assert f"ok  tiny_2: placed by hand, SHA-256 {hand} now recorded in weights.json, trusted on first use" in out
    assert manifest(tiny_ensemble) == {
        "tiny_2": {
            "size": (tiny_ensemble / "tiny_2").stat().st_size,
            "sha256": hand,
            "trust": "placed by hand, trusted on first use",
            "recorded": manifest(tiny_ensemble)["tiny_2"]["recorded"],
        }
    }
    assert weights.main(["verify", "tiny", "--no-load"]) == 0
    assert "ok  tiny_2: SHA-256 placed by hand, trusted on first use since" in capsys.readouterr().out
    with open(tiny_ensemble / "tiny_2", "ab") as file:
        file.write(b"x")
    assert weights.main(["verify", "tiny", "--no-load"]) == 2
    assert "BAD  tiny_2: " in capsys.readouterr().out


def test_the_original_ensemble_is_the_released_seven_b7():
    original = weights.named_ensemble("original")
    assert len(original.files) == 7
    assert all(f.encoder == "tf_efficientnet_b7_ns" and f.input_size == 380 for f in original.files)
    assert all(
        f.url == f"https://github.com/selimsef/dfdc_deepfake_challenge/releases/download/0.0.1/{f.name}"
        for f in original.files
    )
    assert all(f.size is None and f.sha256 is None for f in original.files), "nothing invented: trusted on first use"
    with pytest.raises(ValueError, match="no ensemble named 'newest'; known: original"):
        weights.named_ensemble("newest")
