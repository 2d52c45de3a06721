"""HTTP(S) downloads that are never half true: the size is taken from the response headers before
the body is read, a cut transfer resumes (HTTP Range, with If-Range so that a file changed on the
server is fetched again from the start, never spliced) and the file is renamed into place, fsynced,
only when whole (and, where one is expected, with the right SHA-256). Redirects never leave HTTPS.
An answer that is a page (HTML, text), whose first bytes are not what the caller expects, or whose
size the caller's bounds or the free disk space rule out is refused before its body is written; a
body longer than the file can be is cut off and removed; a transfer slower than a SpeedLimit is
cut (see inference.models.download_transport). Used by inference.weights (which says what a fetch records
and trusts)."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from common.cli import InputError
from inference.models.download_checks import (
    FIRST_BYTES,
    Expected,
    change_between,
    content_type_problem,
    size_problem,
    space_problem,
    unconfirmed_resume,
    validator_from,
)
from inference.models.download_partial import discard, resume_problem, start_afresh, validator_path
from inference.models.download_transport import SpeedLimit, Watchdog, watched_opener

logger = logging.getLogger("inference.models.download")

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


class NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not redirect_allowed(req.full_url, newurl):
            fp.close()
            raise DownloadError(
                f"{req.full_url}: redirected to {newurl}, which is not HTTPS; refused (a download never leaves "
                "HTTPS); fetch the file by other means and check its SHA-256 with `verify`"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def stated_size(status: int, headers) -> int | None:
    """The whole file's size as a response's headers state it: Content-Range's total for a partial
    answer (206, or 416 `bytes */N`), Content-Length for a whole one; None where they do not."""
    if status in (206, 416):
        match = re.fullmatch(r"bytes (\d+-\d+|\*)/(\d+)", headers.get("Content-Range", "").strip())
        return int(match.group(2)) if match else None
    length = headers.get("Content-Length", "").strip()
    return int(length) if length.isdigit() else None


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


@dataclass(frozen=True)
class _Attempt:
    total: int | None  # the whole file's size as the server stated it
    cut: str | None  # what ended the body early; None when it ended at its end (or was empty)
    changed: bool = False  # the file changed on the server: the partial one was removed


def _download_once(
    url: str, partial: Path, timeout: float, expected: Expected, speed: SpeedLimit, identity: str, cookie: str | None
) -> _Attempt:
    """Append what the server sends after `partial`'s bytes to it. A stated size the caller rules
    out, or one the disk cannot hold, is refused before anything is written; a connection cut
    mid-body (or too slow) is reported, not raised, with the size the headers stated. `identity`
    is the address the partial file is recorded against (`url` but where it changes per request)."""
    start = partial.stat().st_size if partial.exists() else 0
    recorded = None
    if start:
        problem, recorded = resume_problem(partial, identity, bool(expected.sha256))
        if problem:
            logger.warning("%s: %s; starting again", partial, problem)
            discard(partial)
            start = 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    if cookie:
        headers["Cookie"] = cookie
    if start and recorded and recorded.if_range():
        headers["If-Range"] = recorded.if_range()
    with Watchdog(speed) as watchdog:
        try:
            response = watched_opener(watchdog, NoDowngradeRedirects).open(
                urllib.request.Request(url, headers=headers), timeout=timeout
            )
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 416 and start:  # nothing after our bytes: the partial file is whole (or too long)
                total = stated_size(416, error.headers)
                change = recorded and change_between(recorded, validator_from(identity, total, error.headers))
                if change:
                    discard(partial)
                    return _Attempt(None, f"the file changed on the server: {change}", changed=True)
                if total is None:  # which, the server does not say: the bytes kept cannot be judged, start again
                    discard(partial)
                    return _Attempt(None, "the server refused the resume (HTTP 416) without stating the file's size")
                return _Attempt(total, None)
            raise DownloadError(f"{url}: the server answered HTTP {error.code} ({error.reason})") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            if watchdog.fired:
                return _Attempt(None, speed.describe())
            reason = getattr(error, "reason", error)
            raise _UnreachableError(
                f"{url}: cannot reach the host ({reason}); fetch the file by other means and put it at "
                f"{partial.with_name(partial.name.removesuffix('.part'))}"
            ) from None
        with response:
            return _receive(response, url, partial, start, recorded, expected, watchdog, identity)


def _receive(
    response, url, partial: Path, start: int, recorded, expected: Expected, watchdog: Watchdog, identity: str
) -> _Attempt:
    # A whole answer (200) to a resume (the server ignored the range, or If-Range found the file
    # changed) replaces the partial file only once its first bytes are judged to be the file's:
    # until then the partial file is kept, for a refusal loses nothing.
    kept = start
    if start and response.status != 206:
        start = 0
    if response.status == 206:
        first = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if not first or int(first.group(1)) != start:
            raise DownloadError(f"{url}: asked for bytes {start}- and got {response.headers.get('Content-Range')}")
    total = stated_size(response.status, response.headers)
    validator = validator_from(identity, total, response.headers)
    change = start and recorded and change_between(recorded, validator)
    if change:  # a server that answers the range of a changed file regardless of If-Range
        discard(partial)
        return _Attempt(None, f"the file changed on the server: {change}", changed=True)
    unconfirmed = start and recorded and unconfirmed_resume(recorded, validator)
    if unconfirmed:  # its bytes may be another version's: the partial file's cannot be spliced to them
        discard(partial)
        return _Attempt(None, f"the file on the server may have changed: {unconfirmed}", changed=True)
    _refuse_before_the_body(response, url, partial, start, kept, total, expected)
    limit = (total, "the size the server stated") if total is not None else expected.most_bytes()
    cut, written, head = None, start, b""
    out = open(partial, "ab") if start else None  # noqa: SIM115 (closed below)
    try:
        with tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=partial.name.removesuffix(".part"),
            leave=False,
        ) as bar:
            while True:
                try:
                    block = response.read1(1 << 20)
                except (http.client.HTTPException, OSError) as error:
                    cut = f"{type(error).__name__}: {error}".rstrip(": ")
                    break
                watchdog.received += len(block)
                bar.update(len(block))
                if out is None:  # the file's first bytes: judged before any is written
                    head += block
                    if block and len(head) < FIRST_BYTES:
                        continue
                    if not block and (watchdog.fired or (total is not None and len(head) < total)):
                        # cut before its first bytes: not a short file, nothing written; a partial
                        # file kept is not judged by the size of this whole answer
                        return _Attempt(None if kept else total, watchdog.limit.describe() if watchdog.fired else cut)
                    _judge_first_bytes(head, url, expected, partial, kept)
                    start_afresh(partial, validator)
                    out, block, head = open(partial, "wb"), head, b""  # noqa: SIM115 (closed below)
                if not block:
                    break
                if limit is not None and written + len(block) > limit[0]:
                    out.close()
                    discard(partial)
                    raise DownloadError(
                        f"{url}: the server sent more than {limit[0]} bytes, {limit[1]}; stopped there and removed "
                        "the partial file"
                    )
                _write(out, block, partial)
                written += len(block)
    finally:
        if out is not None:
            out.close()
    return _Attempt(total, watchdog.limit.describe() if watchdog.fired else cut)


def _refuse_before_the_body(
    response, url, partial: Path, start: int, kept: int, total: int | None, expected: Expected
) -> None:
    """Refuse an answer that cannot be the file, or cannot fit on the disk, from its headers alone.
    The answer continues the partial file from `start` (0: a whole answer); `kept` bytes of an
    earlier answer are in the partial file, kept unless this answer continues them."""
    so_far = _kept_note(partial, kept)
    page = None if expected.text_file else content_type_problem(response.headers.get("Content-Type"))
    if page:
        size = f"{total} bytes; " if total is not None else ""
        raise DownloadError(
            f"{url}: {page} ({size}a sign-in or 'confirm the download' page?); nothing was saved{so_far}: fetch "
            "the file by other means"
        )
    if total is not None:
        problem = (
            f"{total} bytes, expected {expected.size}"
            if expected.size is not None and total != expected.size
            else size_problem(total, expected.min_size, expected.max_size)
        )
        if problem:
            if start:  # the partial file's bytes are of this file: they cannot become the file either
                discard(partial)
                so_far = " (the partial file was removed)"
            raise DownloadError(f"{url}: the server's file has {problem}; nothing was saved{so_far}")
    needed = (total if total is not None else expected.size or 0) - start
    space = space_problem(needed, free_bytes(partial.parent))
    if space:
        raise DownloadError(
            f"{partial.parent}: no room for {url}: {space}; nothing was written{so_far}: free some space or fetch "
            "into another folder"
        )


def _kept_note(partial: Path, kept: int) -> str:
    return f" (the {kept} bytes so far are kept in {partial})" if kept else ""


def _judge_first_bytes(head: bytes, url: str, expected: Expected, partial: Path, kept: int) -> None:
    problem = expected.first_bytes_problem and expected.first_bytes_problem(head)
    if problem:
        raise DownloadError(f"{url}: not the file: {problem}; nothing was saved{_kept_note(partial, kept)}")


def _write(out, block: bytes, partial: Path) -> None:
    try:
        out.write(block)
    except OSError as error:
        raise DownloadError(f"{partial}: cannot write ({error.strerror}); fix that, run fetch again") from None


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _first_bytes_of(path: Path) -> bytes:
    with open(path, "rb") as file:
        return file.read(FIRST_BYTES)


def download(
    url: str,
    destination: Path,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    timeout: float = 10.0,
    attempts: int = 3,
    sha256_origin: str = "pinned in the registry",
    *,
    expected: Expected | None = None,
    speed: SpeedLimit | None = None,
    identity: str | None = None,
    cookie: str | None = None,
) -> str:
    """Fetch `url` to `destination` through `destination`.part, resuming a transfer cut short up
    to `attempts` times, and return its SHA-256. The file is renamed into place (fsynced first)
    only when its size is the one stated (by `expected_size`, else by the server's headers) and its
    SHA-256 is `expected_sha256` where given; a size stated nowhere is accepted only on a matching
    `expected_sha256`. `expected`, given instead of those two and `sha256_origin`, adds bounds on
    the size and a check of the first bytes; `speed` (default SpeedLimit()) cuts a transfer too
    slow. A short .part is kept for the next call to resume (the validator of the answer it came
    from beside it, in .part.json, recorded against `identity`, default `url`: the stable address
    of a file whose download address changes per request, as Google Drive's confirmed one does);
    one that cannot become the file is removed. `cookie`, a Cookie header sent with each request:
    what a page before the download set (Google Drive's confirmation)."""
    expected = expected or Expected(expected_size, expected_sha256, sha256_origin)
    speed = speed or SpeedLimit()
    destination = Path(destination)
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"{url}: not an HTTP(S) address")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    if partial.is_file() and partial.stat().st_size >= FIRST_BYTES and expected.first_bytes_problem:
        problem = expected.first_bytes_problem(_first_bytes_of(partial))
        if problem:  # left by an earlier run that did not judge them: it cannot become the file
            logger.warning("%s: %s; removed", partial, problem)
            discard(partial)
    wanted, got, cut, attempt, restarted = expected.size, 0, None, 0, False
    while True:
        attempt += 1
        try:
            result = _download_once(url, partial, timeout, expected, speed, identity or url, cookie)
        except _UnreachableError:
            if attempt == 1:
                raise
            result = _Attempt(None, "the host could not be reached")
        if result.changed and not restarted:  # once more from the start, not counted as an attempt
            logger.warning("%s: %s; starting again", destination.name, result.cut)
            attempt, restarted = attempt - 1, True
            continue
        if result.total is not None:
            wanted = result.total
        got, cut = (partial.stat().st_size if partial.exists() else 0), result.cut
        if wanted is not None and got > wanted:
            discard(partial)
            raise DownloadError(f"{url}: got {got} bytes, expected {wanted}; the partial file was removed")
        if got == wanted or (wanted is None and cut is None and expected.sha256):
            break
        if wanted is None and cut is None:
            raise DownloadError(
                f"{url}: the server did not state the file's size and the registry pins neither its size nor its "
                f"SHA-256, so the {got} bytes received cannot be known to be whole; they are kept in {partial}, not "
                f"used (pin the size or SHA-256 in inference/models/named_weights.py, or check the file by other "
                f"means and rename it to {destination})"
            )
        cut = cut or "short body"
        if attempt >= attempts:
            if result.changed:
                raise DownloadError(f"{url}: {cut}; the partial file was removed: run fetch again to fetch it whole")
            if not got:
                raise DownloadError(
                    f"{url}: the connection was cut ({cut}) before any of the file was saved; run fetch again"
                )
            of = f"{got} of {wanted} bytes" if wanted is not None else f"{got} bytes of a file of unstated size"
            raise DownloadError(
                f"{url}: the connection was cut after {of} ({cut}); run fetch again to resume (the bytes so far are "
                f"kept in {partial})"
            )
        if result.changed:
            logger.warning("%s: %s; starting again", destination.name, cut)
        elif got:
            of = f"{got} of {wanted} bytes" if wanted is not None else f"{got} bytes of a file of unstated size"
            logger.warning("%s: cut after %s (%s); resuming", destination.name, of, cut)
        else:
            logger.warning("%s: cut (%s) before any of the file was saved; trying again", destination.name, cut)
        time.sleep(RETRY_PAUSE_S * attempt)
    return _accept(url, partial, destination, got, expected)


def _accept(url: str, partial: Path, destination: Path, got: int, expected: Expected) -> str:
    """Rename a whole `partial` into place, fsynced, if its size and SHA-256 are right."""
    problem = size_problem(got, expected.min_size, expected.max_size)
    if problem:
        discard(partial)
        raise DownloadError(f"{url}: the file has {problem}; it was removed, nothing was put in place")
    digest = sha256(partial)
    if expected.sha256 is not None and digest != expected.sha256.lower():
        discard(partial)
        raise DownloadError(
            f"{url}: the file's SHA-256 is {digest}, not the {expected.sha256} {expected.sha256_origin}; it was "
            "removed, nothing was put in place"
        )
    _fsync(partial)
    os.replace(partial, destination)
    validator_path(partial).unlink(missing_ok=True)
    _fsync(destination.parent)
    return digest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
