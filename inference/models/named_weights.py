"""Named ensembles of released checkpoints: list them, fetch them into a cache folder, verify them.

    python -m inference.weights list
    python -m inference.weights fetch original [--dir DIR] [--timeout S] [--speed-limit B --speed-time S]
    python -m inference.weights verify original [--dir DIR] [--no-load]

`original` is the original solution's final ensemble: seven EfficientNet-B7 checkpoints (fold 0,
seeds 111 to 999) from its GitHub release 0.0.1, bare state dicts scored at 380 px. Files go to
$DEEPFAKE_DETECTOR_WEIGHTS, else ~/.cache/deepfake-detector/weights ($XDG_CACHE_HOME honoured), or
--dir. Where the host cannot be reached, `fetch` fails within seconds and says where to put files
fetched by other means.

A download is written to NAME.part and renamed into place (after an fsync) only when whole: its
size is taken from the response headers (Content-Length, Content-Range) before the body is read,
or from the registry where it pins one. A cut transfer resumes where it stopped (HTTP Range), by
itself a few times and again at the next `fetch`; the .part is kept meanwhile. A transfer whose
size is stated nowhere (a close-delimited answer and no size pinned) is accepted only when the
registry pins its SHA-256 and the bytes match it; otherwise it is refused and kept as NAME.part.
A file whose size or SHA-256 differs from the registry's (or from the one recorded on first use)
is refused and its .part removed. Redirects are followed to HTTPS only (plain HTTP to plain HTTP,
as a local mirror may, is let through): HTTPS to HTTP, or to any other scheme, is refused.

A resume sends If-Range with the ETag (else Last-Modified) of the answer the .part came from,
recorded beside it in NAME.part.json: a file changed on the server since is fetched again from
the start (also when a server ignores If-Range but its answer names another version), never
spliced; a .part with no such record is resumed only when its SHA-256 is pinned or recorded. An
answer that is a page (text, HTML, JSON: a "confirm the download" interstitial), whose first bytes
do not start a checkpoint (a zip or a pickle), or whose stated size is outside the registry's
bounds or larger than the free disk space is refused before anything is written; a body that runs
past the registry's size or maximum is stopped there and removed. --timeout bounds each connect
and read; a transfer slower than --speed-limit bytes/s over any --speed-time seconds (curl's
options; the response's headers must arrive within --speed-time) is cut, then resumed as above.

`fetch` records each file's size and SHA-256 in weights.json beside them. Where the registry pins
no SHA-256 (the seven `original` files: their hashes are not published), the first download's is
recorded and trusted on first use: later fetches and `verify` hold the file to it, and `list`
says, per file, whether its hash is pinned, trusted on first use, or unknown (placed by hand). A
file already in place is checked against the pinned and recorded size and hash before `fetch`
accepts it. `verify` checks each file the same way and loads it as the ensemble's encoder (weights
only); a file placed by hand is hashed, and once it has loaded its hash is recorded in
weights.json as trusted on first use (with --no-load it is only reported: nothing checked it).

A named ensemble is usable wherever a checkpoint list is: `inference.predict --ensemble original`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from common import cli
from common.io_utils import atomic_path
from inference.models.download import DownloadError, download, sha256
from inference.models.download_checks import Expected, checkpoint_start_problem
from inference.models.download_transport import SpeedLimit

logger = logging.getLogger("inference.weights")

MANIFEST = "weights.json"
FETCHED, PLACED_BY_HAND, PINNED = "trusted on first use", "placed by hand, trusted on first use", "pinned"
LEGACY = "trusted on first use (recorded by an older fetch that did not check sizes: run verify)"


@dataclass(frozen=True)
class WeightFile:
    name: str
    url: str
    encoder: str
    input_size: int
    size: int | None = None  # bytes, where the publisher states it
    sha256: str | None = None  # hex digest, where the publisher states it
    min_size: int | None = None  # bounds on the size in bytes, where it is not stated exactly
    max_size: int | None = None


@dataclass(frozen=True)
class NamedEnsemble:
    name: str
    description: str
    files: tuple[WeightFile, ...]
    # the MTCNN scale its checkpoints' faces were found at, which detect and the page score at unless
    # told otherwise (preprocess.faces.face_detector.parse_scale reads it; "rule": by resolution)
    detector_scale: float | str = "rule"


_ORIGINAL_RELEASE = "https://github.com/selimsef/dfdc_deepfake_challenge/releases/download/0.0.1/"
_ORIGINAL_FILES = (
    "final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36",
    "final_555_DeepFakeClassifier_tf_efficientnet_b7_ns_0_19",
    "final_777_DeepFakeClassifier_tf_efficientnet_b7_ns_0_29",
    "final_777_DeepFakeClassifier_tf_efficientnet_b7_ns_0_31",
    "final_888_DeepFakeClassifier_tf_efficientnet_b7_ns_0_37",
    "final_888_DeepFakeClassifier_tf_efficientnet_b7_ns_0_40",
    "final_999_DeepFakeClassifier_tf_efficientnet_b7_ns_0_23",
)

ENSEMBLES = {
    "original": NamedEnsemble(
        "original",
        "the winning solution's seven EfficientNet-B7 at 380 px (fold 0, seeds 111-999), as its authors released them",
        # The release states no sizes or hashes: they are trusted on first use (see the docstring).
        # Bounds from the model, not the publisher: a B7's 66.4M weights take 266 MB in fp32 (133 MB
        # even in fp16); 1 GB leaves room for an optimizer's state beside them.
        tuple(
            WeightFile(name, _ORIGINAL_RELEASE + name, "tf_efficientnet_b7_ns", 380, min_size=10**8, max_size=10**9)
            for name in _ORIGINAL_FILES
        ),
        detector_scale=0.5,  # the original code found faces at half size, for its training crops and its kernel
    ),
}


def default_weights_dir() -> Path:
    """$DEEPFAKE_DETECTOR_WEIGHTS, else ~/.cache/deepfake-detector/weights ($XDG_CACHE_HOME honoured)."""
    if os.environ.get("DEEPFAKE_DETECTOR_WEIGHTS"):
        return Path(os.environ["DEEPFAKE_DETECTOR_WEIGHTS"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepfake-detector" / "weights"


def named_ensemble(name: str) -> NamedEnsemble:
    if name not in ENSEMBLES:
        raise ValueError(f"no ensemble named {name!r}; known: {', '.join(sorted(ENSEMBLES))}")
    return ENSEMBLES[name]


def ensemble_entries(name: str, directory: Path | None = None) -> list[dict]:
    """The members of a named ensemble as inference.predict reads an ensemble file's; raise,
    saying how to fetch them, when a file is missing."""
    ensemble, directory = named_ensemble(name), Path(directory or default_weights_dir())
    missing = [f.name for f in ensemble.files if not (directory / f.name).is_file()]
    if missing:
        raise ValueError(
            f"{directory}: {len(missing)} of the {len(ensemble.files)} checkpoints of ensemble {name!r} are missing "
            f"({missing[0]}{', ...' if len(missing) > 1 else ''}); fetch them with `python -m inference.weights fetch "
            f"{name}` (or put them there by hand)"
        )
    return [
        {
            "path": directory / f.name,
            "encoder": f.encoder,
            "input_size": f.input_size,
            "weight": 1.0,
            "detector": getattr(ensemble, "detector", None),
        }
        for f in ensemble.files
    ]


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


def record(directory: Path, path: Path, digest: str, trust: str) -> None:
    """Add a file's size, SHA-256 and how far it is trusted to weights.json in `directory`
    (written whole or not at all)."""
    manifest = read_manifest(directory)
    manifest[path.name] = {
        "size": path.stat().st_size,
        "sha256": digest,
        "trust": trust,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
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


def fetch(name: str, directory: Path, timeout: float = 10.0, speed: SpeedLimit | None = None) -> list[Path]:
    """Every file of a named ensemble in `directory`, downloading those not there yet; a file
    already there is accepted only if it matches the registry's and weights.json's size and hash."""
    directory, fetched = Path(directory), []
    for file in named_ensemble(name).files:
        destination, entry = directory / file.name, read_manifest(directory).get(file.name)
        if destination.is_file():
            problem = mismatch(file, destination, entry)
            if problem:
                raise DownloadError(
                    f"{destination}: already here but {problem}; not accepted: delete it and run fetch again"
                )
            logger.info("%s: already here (%s)", destination, trust_of(file, entry))
        else:
            logger.info("fetching %s", file.url)
            expected = Expected(
                size=file.size or (entry or {}).get("size"),
                sha256=file.sha256 or (entry or {}).get("sha256"),
                sha256_origin="pinned in the registry" if file.sha256 else f"recorded in {MANIFEST} on first use",
                min_size=file.min_size,
                max_size=file.max_size,
                first_bytes_problem=checkpoint_start_problem,
            )
            digest = download(file.url, destination, timeout=timeout, expected=expected, speed=speed)
            trust = PINNED if file.sha256 else (entry or {}).get("trust", FETCHED)
            record(directory, destination, digest, trust)
            if not expected.sha256:
                logger.info("%s: SHA-256 %s recorded in %s, trusted on first use", file.name, digest, MANIFEST)
        fetched.append(destination)
    return fetched


@dataclass(frozen=True)
class Verdict:
    status: str  # "ok", "BAD", or "unchecked" (placed by hand, nothing to check it against, not loaded)
    detail: str
    digest: str | None = None  # the SHA-256 of a file placed by hand, to be recorded


def verify_file(file: WeightFile, directory: Path, manifest: dict, load: bool = True) -> Verdict:
    """Whether a file is what it should be: there, with the pinned or recorded size and SHA-256,
    and (with `load`) weights that load into the encoder."""
    from training.models.zoo import CheckpointError, create_model, load_weights, read_checkpoint

    path, entry = directory / file.name, manifest.get(file.name)
    if not path.is_file():
        partial = path.with_name(path.name + ".part")
        if partial.is_file():
            return Verdict("BAD", f"missing ({partial.stat().st_size} bytes downloaded in {partial.name}: run fetch)")
        return Verdict("BAD", "missing")
    digest = sha256(path)
    problem = mismatch(file, path, entry, digest)
    if problem:
        return Verdict("BAD", problem)
    if load:
        try:
            load_weights(create_model(file.encoder), read_checkpoint(path)["state_dict"], str(path))
        except CheckpointError as error:
            return Verdict("BAD", str(error).removeprefix(f"{path}: "))
    if file.sha256 or entry:
        return Verdict("ok", trust_of(file, entry))
    if not load:
        return Verdict(
            "unchecked",
            f"placed by hand, SHA-256 {digest}: nothing pinned or recorded to check it "
            "against and --no-load loads nothing; run verify without --no-load to check and record it",
        )
    return Verdict("ok", f"placed by hand, SHA-256 {digest} now recorded in {MANIFEST}, trusted on first use", digest)


def list_files(directory: Path) -> list[str]:
    """A line per ensemble, then a line per file: whether it is here and how its hash is known."""
    manifest, lines = read_manifest(directory), []
    for ensemble in ENSEMBLES.values():
        here = sum((directory / f.name).is_file() for f in ensemble.files)
        lines.append(f"{ensemble.name}: {ensemble.description}; {here} of {len(ensemble.files)} files in {directory}")
        for file in ensemble.files:
            path, partial = directory / file.name, directory / (file.name + ".part")
            state = f"{path.stat().st_size} bytes" if path.is_file() else "missing"
            if not path.is_file() and partial.is_file():
                state += f" ({partial.stat().st_size} bytes in {partial.name})"
            lines.append(f"  {file.name}: {state}; {trust_of(file, manifest.get(file.name), path.is_file())}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["list", "fetch", "verify"])
    parser.add_argument("name", nargs="?", help="ensemble name (fetch, verify)")
    parser.add_argument("--dir", type=Path, default=None, help=f"weights folder (default {default_weights_dir()})")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="fetch: seconds each connect or read may wait (default 10)"
    )
    parser.add_argument(
        "--speed-limit",
        type=float,
        default=SpeedLimit.bytes_per_s,
        help="fetch: a transfer slower than this many bytes/s over --speed-time seconds is cut (default "
        "%(default)g, 0 for no limit; --timeout alone bounds one read, not a server sending a byte a second)",
    )
    parser.add_argument(
        "--speed-time",
        type=float,
        default=SpeedLimit.period_s,
        help="fetch: the period for --speed-limit, in seconds; the response's headers must arrive within it "
        "(default %(default)g)",
    )
    parser.add_argument("--no-load", action="store_true", help="verify: sizes and hashes only, no model built")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    directory = args.dir or default_weights_dir()
    if not 0 < args.timeout < math.inf:
        parser.error(f"--timeout must be a number of seconds more than 0, not {args.timeout:g}")
    if not (0 <= args.speed_limit < math.inf and 0 < args.speed_time < math.inf):
        parser.error("--speed-limit must be 0 or more and --speed-time more than 0 (both finite)")
    if args.command != "list" and not args.name:
        parser.error(f"{args.command} needs an ensemble name ({', '.join(sorted(ENSEMBLES))})")
    try:
        if args.command == "list":
            print("\n".join(list_files(directory)))
            return 0
        ensemble = named_ensemble(args.name)
        if args.command == "fetch":
            fetch(args.name, directory, args.timeout, SpeedLimit(args.speed_limit, args.speed_time))
            print(f"{args.name}: {len(ensemble.files)} files in {directory}")
            return 0
        manifest = read_manifest(directory)
        verdicts = {f.name: verify_file(f, directory, manifest, not args.no_load) for f in ensemble.files}
        for name, verdict in verdicts.items():
            if verdict.digest:
                record(directory, directory / name, verdict.digest, PLACED_BY_HAND)
                logger.info("%s: placed by hand; SHA-256 %s recorded, trusted on first use", name, verdict.digest)
    except (ValueError, DownloadError) as error:
        return cli.fail(error)
    for name, verdict in verdicts.items():
        print(f"{verdict.status}  {name}: {verdict.detail}")
    return 2 if any(v.status == "BAD" for v in verdicts.values()) else 0
