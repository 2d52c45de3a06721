"""The decisions a download makes, as pure functions of headers, sizes and bytes: is the answer a
page rather than the file, do its first bytes start a checkpoint, is the stated size possible and
does it fit on the disk, is the file on the server still the one a partial file was cut from, and
is the transfer too slow to go on. inference.models.download applies them."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import asdict, dataclass

ZIP_MAGIC = b"PK\x03\x04"  # torch.save since PyTorch 1.6
PICKLE_PROTOCOLS = range(2, 6)  # the legacy torch.save format: a pickle, protocol 2 by default
FIRST_BYTES = 8  # how many bytes `checkpoint_start_problem` wants to judge

_PAGE_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")


def content_type_problem(content_type: str | None) -> str | None:
    """Why an answer of this Content-Type cannot be a binary file (None when it may be): a text,
    HTML, XML or JSON answer is a page (a sign-in or "confirm the download" interstitial)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type.startswith(_PAGE_TYPES) or media_type.endswith(("+xml", "+json")):
        return f"the server answered with a {media_type} page, not the file"
    return None


def checkpoint_start_problem(first: bytes) -> str | None:
    """Why bytes that start this way cannot be a PyTorch checkpoint, which is a zip archive (or a
    pickle, as torch.save wrote before PyTorch 1.6); None when they may be."""
    if first.startswith(ZIP_MAGIC) or (len(first) >= 2 and first[0] == 0x80 and first[1] in PICKLE_PROTOCOLS):
        return None
    return f"it starts with {first[:FIRST_BYTES]!r}, not as a checkpoint does (a zip archive or a pickle)"


SAFETENSORS_MAX_HEADER = 100 * 2**20  # safetensors' own limit on its JSON header


def safetensors_start_problem(first: bytes) -> str | None:
    """Why bytes that start this way cannot be a safetensors file (its first 8 bytes are the length
    of the JSON header that follows, little-endian); None when they may be."""
    if len(first) < FIRST_BYTES:
        return f"it has {len(first)} bytes, fewer than a safetensors file's 8-byte header length"
    length = int.from_bytes(first[:FIRST_BYTES], "little")
    if not 2 <= length <= SAFETENSORS_MAX_HEADER:
        return f"it starts with {first[:FIRST_BYTES]!r}, not as a safetensors file does (a header length)"
    return None


def json_start_problem(first: bytes) -> str | None:
    """Why bytes that start this way cannot be a JSON object; None when they may be."""
    if first.lstrip().startswith(b"{"):
        return None
    return f"it starts with {first[:FIRST_BYTES]!r}, not as a JSON object does"


def size_problem(size: int, min_size: int | None, max_size: int | None) -> str | None:
    """Why a file of `size` bytes cannot be the registry's, which states `min_size`..`max_size`."""
    if min_size is not None and size < min_size:
        return f"{size} bytes, fewer than the registry's minimum of {min_size}"
    if max_size is not None and size > max_size:
        return f"{size} bytes, more than the registry's maximum of {max_size}"
    return None


def space_problem(needed: int, free: int) -> str | None:
    """Why `needed` more bytes cannot be written where `free` bytes are free (None when they can)."""
    if needed > free:
        return f"{needed} more bytes are needed and only {free} are free"
    return None


@dataclass(frozen=True)
class Expected:
    """What the file must be, as far as the caller knows: its exact size, its bounds (`min_size`,
    `max_size`), its SHA-256 (and where that comes from, for messages) and what its first bytes
    must look like (`first_bytes_problem` says why they cannot be the file's, or None). `text_file`:
    the file is text (a config.json), so an answer of a text or JSON type is not refused as a page."""

    size: int | None = None
    sha256: str | None = None
    sha256_origin: str = "pinned in the registry"
    min_size: int | None = None
    max_size: int | None = None
    first_bytes_problem: Callable[[bytes], str | None] | None = None
    text_file: bool = False

    def most_bytes(self) -> tuple[int, str] | None:
        if self.size is not None:
            return self.size, "the expected size"
        return (self.max_size, "the registry's maximum") if self.max_size is not None else None


@dataclass(frozen=True)
class Validator:
    """What identifies the version of a file a partial download was cut from: the URL, the whole
    size, and the server's strong ETag and Last-Modified, as its first answer gave them."""

    url: str
    size: int | None = None
    etag: str | None = None
    last_modified: str | None = None

    def if_range(self) -> str | None:
        """The If-Range value for a resume (RFC 9110 13.1.5: a strong ETag, else the date)."""
        return self.etag or self.last_modified

    def to_json(self) -> dict:
        return asdict(self)


def validator_from(url: str, size: int | None, headers) -> Validator:
    """The validator an answer's headers carry; a weak ETag (W/...) cannot be used in If-Range."""
    etag = (headers.get("ETag") or "").strip()
    return Validator(url, size, etag if etag and not etag.startswith("W/") else None, headers.get("Last-Modified"))


def validator_read(data) -> Validator | None:
    """A validator as `to_json` wrote it, or None for anything else (an unreadable record)."""
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    fields = {key: data.get(key) for key in ("size", "etag", "last_modified")}
    if not (fields["size"] is None or isinstance(fields["size"], int)):
        return None
    if not all(value is None or isinstance(value, str) for key, value in fields.items() if key != "size"):
        return None
    return Validator(data["url"], **fields)


def change_between(recorded: Validator, now: Validator) -> str | None:
    """How the file on the server differs from the one a partial download was cut from, as far as
    the answers' headers tell (None when they do not): another ETag, Last-Modified or size."""
    for label, before, after in (
        ("ETag", recorded.etag, now.etag),
        ("Last-Modified", recorded.last_modified, now.last_modified),
        ("size", recorded.size, now.size),
    ):
        if before is not None and after is not None and before != after:
            return f"its {label} was {before} and is now {after}"
    return None


def unconfirmed_resume(recorded: Validator, now: Validator) -> str | None:
    """Why a partial answer (206) to a resume does not show it continues the recorded version
    (None when it does): it must repeat the validator the resume's If-Range sent. A server that
    ignores If-Range and states no validator in its 206 would otherwise splice two versions."""
    if recorded.etag is not None and now.etag is None:
        return f"the first answer stated the ETag {recorded.etag} and the answer to the resume states no strong one"
    if recorded.etag is None and recorded.last_modified is not None and now.last_modified is None:
        return (
            f"the first answer stated Last-Modified {recorded.last_modified} and the answer to the resume states none"
        )
    return None


class SpeedWindow:
    """curl's --speed-limit / --speed-time: a transfer is too slow once fewer than `limit` bytes
    per second arrived over the last `period` seconds (the response's headers count as no bytes:
    they must arrive within `period`). Fed (time, bytes received so far) samples."""

    def __init__(self, limit: float, period: float, now: float):
        self.limit, self.period = limit, period
        self.samples: collections.deque[tuple[float, int]] = collections.deque([(now, 0)])

    def too_slow(self, now: float, received: int) -> bool:
        self.samples.append((now, received))
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.period:
            self.samples.popleft()  # keep one sample at or before the window's start
        since, then = self.samples[0]
        return now - since >= self.period and received - then < self.limit * self.period
