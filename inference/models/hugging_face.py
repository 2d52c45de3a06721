"""Files of a Hugging Face hub repository at a pinned revision, with the guarantees of every other
download here.

huggingface_hub asks the hub for the file's record at the pinned revision (`get_hf_file_metadata`, a
HEAD of its resolve address at $HF_ENDPOINT, else https://huggingface.co): the commit the revision
resolves to, the file's size and, for a large (LFS) file, its SHA-256. A record that differs from
the registry's pins (another commit, size or SHA-256) is refused before any byte is fetched. The
bytes then come through inference.models.download (the resolve address, redirected to the hub's
CDN): size-checked, written to NAME.part and resumed where a transfer was cut, in this fetch or a
later one, renamed into place only when whole and with the pinned (else the hub's stated, else the
first-use) SHA-256. hf_hub_download is not used for the bytes: the installed huggingface_hub removes
a cut transfer's partial file, so a 1.2 GB file cut at 90 % would start again from nothing.

With HF_HUB_OFFLINE set, nothing is asked of the hub: `offline_problem` says so at once."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from inference.models.download import DownloadError, download
from inference.models.download_checks import Expected
from inference.models.download_transport import SpeedLimit
from inference.models.weights_registry import HuggingFace

logger = logging.getLogger("inference.models.hugging_face")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def endpoint() -> str:
    """The hub's address: $HF_ENDPOINT as huggingface_hub reads it, else its default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    """Whether huggingface_hub is told to stay offline (HF_HUB_OFFLINE, or TRANSFORMERS_OFFLINE)."""
    from huggingface_hub import constants

    told = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or told.strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline_problem(name: str, destinations: list[Path]) -> str | None:
    """Why files of the hub cannot be fetched now (None when they can): offline mode."""
    if not destinations or not offline():
        return None
    return (
        f"{name}: HF_HUB_OFFLINE is set, so the Hugging Face hub is not asked for {destinations[0].name}"
        f"{' and the rest' if len(destinations) > 1 else ''}; unset HF_HUB_OFFLINE to fetch, or put the files "
        f"fetched by other means at {destinations[0]}{', ...' if len(destinations) > 1 else ''} and run verify"
    )


@dataclass(frozen=True)
class HubRecord:
    """What the hub states of a file at a revision."""

    commit: str | None
    etag: str | None  # for an LFS file, its SHA-256
    size: int | None

    def sha256(self) -> str | None:
        return self.etag if self.etag and _SHA256.fullmatch(self.etag) else None


def record_problem(origin: HuggingFace, record: HubRecord, expected: Expected) -> str | None:
    """How the hub's record of a file differs from what the registry pins (None when it does not)."""
    if _COMMIT.fullmatch(origin.revision) and record.commit != origin.revision:
        return f"the hub resolves revision {origin.revision} to commit {record.commit}, not to itself"
    if expected.size is not None and record.size is not None and record.size != expected.size:
        return f"the hub states {record.size} bytes, the registry pins {expected.size}"
    if expected.sha256 and record.sha256() and record.sha256() != expected.sha256.lower():
        return f"the hub states SHA-256 {record.sha256()}, not the {expected.sha256} {expected.sha256_origin}"
    return None


def hub_record(url: str, timeout: float) -> HubRecord:
    """The hub's record of the file at resolve address `url` (huggingface_hub's HEAD)."""
    import httpx2
    from huggingface_hub import close_session, get_hf_file_metadata
    from huggingface_hub.errors import (
        FileMetadataError,
        GatedRepoError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        metadata = get_hf_file_metadata(url, timeout=timeout)
    except RevisionNotFoundError:
        raise DownloadError(f"{url}: the hub has no such revision of the repository") from None
    except RemoteEntryNotFoundError:
        raise DownloadError(f"{url}: the hub has no such file at that revision") from None
    except (RepositoryNotFoundError, GatedRepoError) as error:
        raise DownloadError(f"{url}: the hub refuses the repository ({type(error).__name__})") from None
    except OfflineModeIsEnabled:
        raise DownloadError(f"{url}: HF_HUB_OFFLINE is set, so the hub is not asked; unset it to fetch") from None
    except (httpx2.HTTPError, FileMetadataError) as error:
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        raise DownloadError(f"{url}: cannot ask the Hugging Face hub ({reason})") from None
    finally:
        close_session()  # its pooled connection: a command asks the hub once or twice
    return HubRecord(metadata.commit_hash, metadata.etag, metadata.size)


def fetch_hub_file(
    origin: HuggingFace, destination: Path, expected: Expected, timeout: float, speed: SpeedLimit
) -> str:
    """Download `origin` to `destination` as the module's docstring says; return its SHA-256."""
    url = origin.resolve_url(endpoint())
    record = hub_record(url, timeout)
    problem = record_problem(origin, record, expected)
    if problem:
        raise DownloadError(f"{url}: {problem}; nothing was fetched")
    if expected.sha256 is None and record.sha256():
        expected = replace(expected, sha256=record.sha256(), sha256_origin="the hub states for that revision")
    if expected.size is None and record.size is not None:
        expected = replace(expected, size=record.size)
    logger.info("%s: commit %s of %s, %s bytes", origin.filename, record.commit, origin.repo_id, record.size)
    return download(url, destination, timeout=timeout, expected=expected, speed=speed, identity=url)
