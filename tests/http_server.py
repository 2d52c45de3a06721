"""A real HTTP(S) server on 127.0.0.1 for the download tests: it serves ranges (If-Range
honoured or ignored), cuts and resets connections, answers without a length, redirects, speaks TLS
with a self-signed certificate, and behaves as hostile servers do: a file that changes between
requests, an HTML page in place of the file, a huge stated Content-Length, an endless body, and
headers or a body trickled at N bytes a second. Its fixtures (`server`, `tls_server`) are imported
by the test modules that use them."""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import numpy as np
import pytest

from inference.models import download as downloads

# Random bytes that start as a checkpoint does (a zip archive), so that fetch's check of the first
# bytes lets them through.
PAYLOAD = b"PK\x03\x04" + np.random.default_rng(0).integers(0, 256, 300_000 - 4, dtype=np.uint8).tobytes()
OTHER = b"PK\x03\x04" + np.random.default_rng(1).integers(0, 256, 200_000 - 4, dtype=np.uint8).tobytes()

# A 960-byte "confirm the download" page, as Google Drive answers for a file too large to scan.
INTERSTITIAL = (
    b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
    b"<p>Google Drive can't scan this file for viruses.</p><form action='/uc?export=download' method='get'>"
    b"<input type='submit' value='Download anyway'/><input type='hidden' name='confirm' value='t'/></form>"
)
INTERSTITIAL += b"<!--" + b"x" * (960 - len(INTERSTITIAL) - 21) + b"--></body></html>"
assert len(INTERSTITIAL) == 960


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves `files` ({path: bytes}) with HTTP Range over HTTP/1.0. `plan[path]` lists how the
    next answers for a path end: ("close", n) sends n bytes of the body and closes the connection,
    ("reset", n) sends n bytes, lets the client read them, then resets the connection (TCP RST);
    an answer with no plan left is whole. `no_length` paths are answered whole, close-delimited and
    without Content-Length (Range ignored), as a plain HTTP/1.0 server does; `redirects[path]`
    answers 302 to that address. With `tls` (cert, key) it speaks HTTPS.

    Each answer carries an ETag and a Last-Modified of the file's current bytes (none for paths in
    `no_validators`) and honours If-Range (a range of a changed file is answered whole), except
    for paths in `ignores_if_range`; paths in `bare_206` answer a range (of whatever version) with
    no ETag nor Last-Modified, If-Range ignored. `changes[path]` lists the bytes the file has after each
    answer in turn (a file that changes between requests); `content_types[path]` replaces
    application/octet-stream; `stated_lengths[path]` is the Content-Length stated whatever the
    body; `endless[path]` is a cap: a body of no stated length sent until the client stops reading
    or the cap is sent (`sent[path]` counts the bytes written); `trickle[path]` is (bytes per
    second, "headers" or "body"): that part of the answer is sent at that rate, for at most
    `trickle_for` seconds. Requests' Range and If-Range headers are kept in `ranges`, `if_ranges`,
    their method and path in `requests`, a GET's Cookie header in `cookies`. `headers[path]` adds
    headers to every answer for a path (as the Hugging Face hub states a file's commit, size and
    SHA-256; a page sets a cookie); a HEAD is answered with the headers a GET would have (redirect,
    or 200 with the length), without a body."""

    def __init__(self, tls: tuple | None = None):
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list[tuple[str, int]]] = {}
        self.no_length: set[str] = set()
        self.redirects: dict[str, str] = {}
        self.bare_416: set[str] = set()  # paths whose 416 states no size (no Content-Range)
        self.no_validators: set[str] = set()
        self.ignores_if_range: set[str] = set()
        self.bare_206: set[str] = set()
        self.changes: dict[str, list[bytes]] = {}
        self.content_types: dict[str, str] = {}
        self.stated_lengths: dict[str, int] = {}
        self.endless: dict[str, int] = {}
        self.sent: dict[str, int] = {}
        self.trickle: dict[str, tuple[float, str]] = {}
        self.trickle_for = 20.0
        self.ranges: list[str | None] = []
        self.if_ranges: list[str | None] = []
        self.requests: list[tuple[str, str]] = []
        self.cookies: list[str | None] = []
        self.headers: dict[str, dict[str, str]] = {}
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def extra_headers(self):
                for name, value in server.headers.get(self.path, {}).items():
                    self.send_header(name, value)

            def do_HEAD(self):
                server.requests.append(("HEAD", self.path))
                body = server.files.get(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                elif body is None:
                    self.send_response(404)
                else:
                    self.send_response(200)
                    for name, value in server.validators(body).items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", server.content_types.get(self.path, "application/octet-stream"))
                    self.send_header("Content-Length", str(len(body)))
                self.extra_headers()
                self.end_headers()

            def do_GET(self):
                server.requests.append(("GET", self.path))
                server.cookies.append(self.headers.get("Cookie"))
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.extra_headers()
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                try:
                    self.answer(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading, as it should from a hostile server
                finally:
                    if server.changes.get(self.path):
                        server.files[self.path] = server.changes[self.path].pop(0)

            def answer(self, body: bytes):
                server.ranges.append(self.headers.get("Range"))
                server.if_ranges.append(self.headers.get("If-Range"))
                requested = None if self.path in server.no_length else self.headers.get("Range")
                validators = server.validators(body) if self.path not in server.no_validators else {}
                if_range = self.headers.get("If-Range")
                changed = if_range and if_range not in validators.values()
                if requested and changed and not {self.path} & (server.ignores_if_range | server.bare_206):
                    requested = None  # RFC 9110 13.1.5: another version, answered whole
                if requested and self.path in server.bare_206:
                    validators = {}
                start = int(requested.split("=")[1].rstrip("-")) if requested else 0
                if start >= len(body) > 0:
                    self.send_response(416)
                    if self.path not in server.bare_416:
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                if self.path in server.trickle:
                    self.trickle(body, *server.trickle[self.path])
                    return
                self.send_response(206 if requested else 200)
                for name, value in validators.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", server.content_types.get(self.path, "application/octet-stream"))
                self.extra_headers()
                if requested:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if self.path in server.stated_lengths:
                    self.send_header("Content-Length", str(server.stated_lengths[self.path]))
                elif self.path not in server.no_length and self.path not in server.endless:
                    self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.close_connection = True
                if self.path in server.endless:
                    self.send_endlessly(body, server.endless[self.path])
                    return
                plan = server.plan.get(self.path)
                how, cut = plan.pop(0) if plan else (None, None)
                self.wfile.write(body[start:] if cut is None else body[start : start + cut])
                if how == "reset":
                    time.sleep(0.3)  # the client reads what was sent; then the connection is reset, not closed
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()

            def send_endlessly(self, body: bytes, cap: int):
                server.sent[self.path] = 0
                while server.sent[self.path] < cap and not server.stopping.is_set():
                    self.wfile.write(body)
                    server.sent[self.path] += len(body)

            def trickle(self, body: bytes, rate: float, part: str):
                """The answer's headers (or its body) at `rate` bytes a second, the rest at once."""
                self.close_connection = True
                head = "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                head = (head + f"Content-Length: {len(body)}\r\n\r\n").encode()
                fast, slow, rest = (b"", head, body) if part == "headers" else (head, body, b"")
                self.wfile.write(fast)
                ends = time.monotonic() + server.trickle_for
                for offset in range(len(slow)):
                    if server.stopping.wait(1 / rate) or time.monotonic() > ends:
                        return
                    self.wfile.write(slow[offset : offset + 1])
                self.wfile.write(rest)

        class NonDaemonServer(http.server.ThreadingHTTPServer):
            daemon_threads = False  # so that close() waits for the handlers (each ends soon once stopping)

        self.httpd = NonDaemonServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @staticmethod
    def validators(body: bytes) -> dict[str, str]:
        """A strong ETag and a Last-Modified, both of the bytes (so they change with them)."""
        seconds = 1_600_000_000 + int(digest(body)[:6], 16)
        return {"ETag": f'"{digest(body)[:16]}"', "Last-Modified": email.utils.formatdate(seconds, usegmt=True)}

    def close(self):
        self.stopping.set()
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
