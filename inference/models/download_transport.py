"""Connections a slow server cannot hold open: a watchdog thread per transfer that, once fewer than
`SpeedLimit.bytes_per_s` bytes per second arrived over `SpeedLimit.period_s` seconds (curl's
--speed-limit / --speed-time; the response's headers must arrive within the period), shuts the
connection's socket down so that a read blocked on a trickling server returns. A socket timeout
alone bounds each read, not the transfer: one byte a second never trips it."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass

from inference.models.download_checks import SpeedWindow


@dataclass(frozen=True)
class SpeedLimit:
    bytes_per_s: float = 1024.0
    period_s: float = 30.0

    def describe(self) -> str:
        return f"slower than {self.bytes_per_s:g} bytes/s over {self.period_s:g} s"


class Watchdog:
    """Use as a context manager around one request and its body; add each body block's length to
    `received`. `fired` says whether it cut the transfer for being too slow."""

    def __init__(self, limit: SpeedLimit):
        self.limit, self.received, self.fired = limit, 0, False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._window = SpeedWindow(self.limit.bytes_per_s, self.limit.period_s, time.monotonic())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.fired:
                _shut_down(sock)

    def _run(self) -> None:
        tick = min(0.25, self.limit.period_s / 10)
        while not self._stop.wait(tick):
            if self._window.too_slow(time.monotonic(), self.received):
                with self._lock:
                    self.fired = True
                    for sock in self._sockets:
                        _shut_down(sock)
                return


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to cut
        # The base class's: an SSLSocket's own would drop its TLS state under the reading thread.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(base: type[http.client.HTTPConnection], watchdog: Watchdog):
    class WatchedConnection(base):
        def connect(self):
            super().connect()  # (a TLS handshake is bounded per read only: the socket is watched after it)
            watchdog.watch(self.sock)

    return WatchedConnection


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self.watchdog), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req):
        return self.do_open(_watched(http.client.HTTPSConnection, self.watchdog), req, context=self._context)


def watched_opener(watchdog: Watchdog, *handlers) -> urllib.request.OpenerDirector:
    """An opener (with `handlers` besides) whose HTTP and HTTPS connections `watchdog` watches."""
    return urllib.request.build_opener(*handlers, _WatchedHTTPHandler(watchdog), _WatchedHTTPSHandler(watchdog))
