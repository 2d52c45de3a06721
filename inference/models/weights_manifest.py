"""weights.json, the record beside fetched weights: each file's size, SHA-256, how far it is trusted
(pinned in the registry, trusted on first use, placed by hand) and, where its licence asked, how its
terms were accepted; and the checks of a file against the registry's pins and that record."""

from __future__ import annotations

import json
import time
from pathlib import Path

from common.io_utils import atomic_path
from inference.models.download import sha256
from inference.models.weights_registry import WeightFile

MANIFEST = "weights.json"
FETCHED, PLACED_BY_HAND, PINNED = "trusted on first use", "placed by hand, trusted on first use", "pinned"
LEGACY = "trusted on first use (recorded by an older fetch that did not check sizes: run verify)"


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable record of fetched files ({error})") from None
    entries = manifest.values() if isinstance(manifest, dict) else [None]
    if not all(
        isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str) for e in entries
    ):
        raise ValueError(f"{path}: not a readable record of fetched files (each needs a size and a sha256)")
    return manifest


def record(directory: Path, path: Path, digest: str, trust: str, terms: str | None = None) -> None:
    """Add a file's size, SHA-256, how far it is trusted and (where asked) how its terms were
    accepted to weights.json in `directory` (written whole or not at all); the file's key is its
    path under `directory` ("sbi/FFraw.tar")."""
    manifest = read_manifest(directory)
    entry = {"size": path.stat().st_size, "sha256": digest, "trust": trust}
    entry["recorded"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if terms:
        entry["terms"] = terms
    manifest[Path(path).relative_to(directory).as_posix()] = entry
    with atomic_path(Path(directory) / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def trust_of(file: WeightFile, entry: dict | None, here: bool = True) -> str:
    """How a file's SHA-256 is known: pinned in the registry, recorded on first use, or not at all."""
    if file.sha256:
        return "SHA-256 pinned in the registry"
    if entry:
        since = f" since {entry['recorded']}" if entry.get("recorded") else ""
        return f"SHA-256 {entry.get('trust', LEGACY)}{since}"
    if here:
        return "placed by hand, SHA-256 unknown: run verify to record it"
    return "SHA-256 not pinned: trusted on first use when fetched"


def mismatch(file: WeightFile, path: Path, entry: dict | None, digest: str | None = None) -> str | None:
    """How `path` differs from the registry's pinned size and SHA-256 and from its weights.json
    record (None when it does not)."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        return f"{size} bytes, the registry pins {file.size}"
    if entry and size != entry["size"]:
        return f"{size} bytes, {entry['size']} when recorded in {MANIFEST}"
    if file.sha256 or entry:
        digest = digest or sha256(path)
        if file.sha256 and digest != file.sha256.lower():
            return f"SHA-256 {digest}, the registry pins {file.sha256}"
        if entry and digest != entry["sha256"]:
            return f"SHA-256 differs from the one recorded in {MANIFEST} ({entry.get('trust', FETCHED)})"
    return None


def size_note(file: WeightFile) -> str:
    """What the registry knows of a file's size, in words."""
    if file.size is not None:
        return f"{file.size:,} bytes (pinned)"
    if file.min_size is not None and file.max_size is not None:
        return f"size not published (held to between {_amount(file.min_size)} and {_amount(file.max_size)})"
    return "size not published"


def _amount(size: int) -> str:
    """A size in the unit a person reads it in: 2 bytes, 300 kB, 100 MB."""
    for unit, bytes_in_unit in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= bytes_in_unit:
            return f"{size / bytes_in_unit:g} {unit}"
    return f"{size} byte{'s' * (size != 1)}"
