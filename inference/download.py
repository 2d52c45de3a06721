"""HTTP(S) downloads that are never half true: the size is taken from the response headers before
the body is read, a cut transfer resumes (HTTP Range) and the file is renamed into place, fsynced,
only when whole (and, where one is expected, with the right SHA-256). Redirects never leave HTTPS.
Used by inference.weights (which says what a fetch records and trusts)."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from preprocess.cli import InputError

logger = logging.getLogger("inference.download")

RETRY_PAUSE_S = 0.5  # times the attempt number, between attempts


class DownloadError(InputError, RuntimeError):
    """A file could not be fetched; the message says which, why, and what to do."""


class _UnreachableError(DownloadError):
    pass


def redirect_allowed(old_url: str, new_url: str) -> bool:
    """Whether a download may follow a redirect: to HTTPS always, to plain HTTP only from plain
    HTTP (never a downgrade from HTTPS), to any other scheme never."""
    old, new = urlsplit(old_url).scheme.lower(), urlsplit(new_url).scheme.lower()
    return new == "https" or old == new == "http"


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not redirect_allowed(req.full_url, newurl):
            fp.close()
            raise DownloadError(
                f"{req.full_url}: redirected to {newurl}, which is not HTTPS; refused (a download never leaves "
                "HTTPS); fetch the file by other means and check its SHA-256 with `verify`"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngradeRedirects)


def stated_size(status: int, headers) -> int | None:
    """The whole file's size as a response's headers state it: Content-Range's total for a partial
    answer (206, or 416 `bytes */N`), Content-Length for a whole one; None where they do not."""
    if status in (206, 416):
        match = re.fullmatch(r"bytes (\d+-\d+|\*)/(\d+)", headers.get("Content-Range", "").strip())
        return int(match.group(2)) if match else None
    length = headers.get("Content-Length", "").strip()
    return int(length) if length.isdigit() else None


@dataclass(frozen=True)
class _Attempt:
    total: int | None  # the whole file's size as the server stated it
    cut: str | None  # what ended the body early; None when it ended at its end (or was empty)


def _download_once(url: str, partial: Path, timeout: float, expected_size: int | None, label: str) -> _Attempt:
    """Append what the server sends after `partial`'s bytes to it. A stated size other than
    `expected_size` is refused before anything is written; a connection cut mid-body is reported,
    not raised, with the size the headers stated."""
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and start:  # nothing after our bytes: the partial file is whole (or too long)
            total = stated_size(416, error.headers)
            if total is None:  # which, the server does not say: the bytes kept cannot be judged, start again
                partial.unlink()
                return _Attempt(None, "the server refused the resume (HTTP 416) without stating the file's size")
            return _Attempt(total, None)
        raise DownloadError(f"{url}: the server answered HTTP {error.code} ({error.reason})") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _UnreachableError(
            f"{url}: cannot reach the host ({reason}); fetch the file by other means and put it at "
            f"{partial.with_name(partial.name.removesuffix('.part'))}"
        ) from None
    with response:
        if start and response.status != 206:  # the server ignored the range: start again
            start = 0
        if response.status == 206:
            first = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not first or int(first.group(1)) != start:
                raise DownloadError(f"{url}: asked for bytes {start}- and got {response.headers.get('Content-Range')}")
        total = stated_size(response.status, response.headers)
        if expected_size is not None and total is not None and total != expected_size:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server's file has {total} bytes, expected {expected_size}")
        cut = None
        with (
            open(partial, "ab" if start else "wb") as out,
            tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False
            ) as bar,
        ):
            while True:
                try:
                    block = response.read1(1 << 20)
                except (http.client.HTTPException, OSError) as error:
                    cut = f"{type(error).__name__}: {error}".rstrip(": ")
                    break
                if not block:
                    break
                try:
                    out.write(block)
                except OSError as error:
                    raise DownloadError(
                        f"{partial}: cannot write ({error.strerror}); fix that, run fetch again"
                    ) from None
                bar.update(len(block))
    return _Attempt(total, cut)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def download(
    url: str,
    destination: Path,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    timeout: float = 10.0,
    attempts: int = 3,
    sha256_origin: str = "pinned in the registry",
) -> str:
    """Fetch `url` to `destination` through `destination`.part, resuming a transfer cut short up
    to `attempts` times, and return its SHA-256. The file is renamed into place (fsynced first)
    only when its size is the one stated (by `expected_size`, else by the server's headers) and its
    SHA-256 is `expected_sha256` where given; a size stated nowhere is accepted only on a matching
    `expected_sha256`. A short .part is kept for the next call to resume; a wrong one is removed."""
    destination = Path(destination)
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"{url}: not an HTTP(S) address")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    wanted, got, cut = expected_size, 0, None
    for attempt in range(1, attempts + 1):
        try:
            result = _download_once(url, partial, timeout, wanted, destination.name)
        except _UnreachableError:
            if attempt == 1:
                raise
            result = _Attempt(None, "the host could not be reached")
        if result.total is not None:
            wanted = result.total
        got, cut = (partial.stat().st_size if partial.exists() else 0), result.cut
        if wanted is not None and got > wanted:
            partial.unlink()
            raise DownloadError(f"{url}: got {got} bytes, expected {wanted}; the partial file was removed")
        if got == wanted or (wanted is None and cut is None and expected_sha256):
            break
        if wanted is None and cut is None:
            raise DownloadError(
                f"{url}: the server did not state the file's size and the registry pins neither its size nor its "
                f"SHA-256, so the {got} bytes received cannot be known to be whole; they are kept in {partial}, not "
                f"used (pin the size or SHA-256 in inference/weights.py, or check the file by other means and rename "
                f"it to {destination})"
            )
        if attempt < attempts:
            of = f"of {wanted} bytes" if wanted is not None else "bytes (size not stated)"
            logger.warning("%s: cut after %d %s (%s); resuming", destination.name, got, of, cut or "short body")
            time.sleep(RETRY_PAUSE_S * attempt)
    else:
        of = f"{got} of {wanted} bytes" if wanted is not None else f"{got} bytes of a file whose size was not stated"
        raise DownloadError(
            f"{url}: the connection was cut after {of} ({cut or 'short body'}); run fetch again to resume (the bytes "
            f"so far are kept in {partial})"
        )
    digest = sha256(partial)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        partial.unlink()
        raise DownloadError(
            f"{url}: the file's SHA-256 is {digest}, not the {expected_sha256} {sha256_origin}; it was removed, "
            "nothing was put in place"
        )
    _fsync(partial)
    os.replace(partial, destination)
    _fsync(destination.parent)
    return digest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
