"""A real HTTP(S) server on 127.0.0.1 for the download tests: it serves ranges, cuts and resets
connections, answers without a length, redirects, and speaks TLS with a self-signed certificate.
Its fixtures (`server`, `tls_server`) are imported by the test modules that use them."""

from __future__ import annotations

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

from inference import download as downloads

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
