"""Named sets of released weights: list them, fetch them into a cache folder, verify them.

    python -m inference.weights list
    python -m inference.weights fetch NAME [--accept-terms] [--dir DIR] [--timeout S] [--speed-limit B --speed-time S]
    python -m inference.weights verify NAME [--dir DIR] [--no-load]

`original` is the original solution's final ensemble: seven EfficientNet-B7 checkpoints (fold 0,
seeds 111 to 999) from its GitHub release 0.0.1, bare state dicts scored at 380 px. The other sets
are other papers' released detectors, each read by its own detector (`list` names it): Self-Blended
Images' EfficientNet-B4 (sbi-ffraw, sbi-ffc23: Google Drive), DeepfakeBench's Xception and
EfficientNet-B4 (deepfakebench-xception, deepfakebench-effnb4: GitHub release v1.0.1 assets) and
GenD's CLIP ViT-L/14 (gend-clip-l14: the Hugging Face hub at a pinned revision). Files go to
$DEEPFAKE_DETECTOR_WEIGHTS, else ~/.cache/deepfake-detector/weights ($XDG_CACHE_HOME honoured), or
--dir, in a subfolder per detector. Where the host cannot be reached, `fetch` fails within seconds
and says where to put files fetched by other means.

`list` shows each set's detector, licence and terms, and each file's source, size (pinned, or the
bounds it is held to) and state. Before `fetch` downloads anything it says the set's licence and
terms (printed and logged); terms that restrict use (SBI's academic non-commercial research
licence, DeepfakeBench's CC BY-NC 4.0) must be accepted first: --accept-terms, or yes when fetch
asks in a terminal; without either nothing is downloaded. The acceptance is recorded beside each
file in weights.json. Nothing is bundled with this project: each file comes from its authors.

A download is written to NAME.part and renamed into place (after an fsync) only when whole: its
size is taken from the response headers (Content-Length, Content-Range) before the body is read,
or from the registry where it pins one. A cut transfer resumes where it stopped (HTTP Range), by
itself a few times and again at the next `fetch`; the .part is kept meanwhile. A transfer whose
size is stated nowhere (a close-delimited answer and no size pinned) is accepted only when the
registry pins its SHA-256 and the bytes match it; otherwise it is refused and kept as NAME.part.
A file whose size or SHA-256 differs from the registry's (or from the one recorded on first use)
is refused and its .part removed. Redirects are followed to HTTPS only (plain HTTP to plain HTTP,
as a local mirror may, is let through): HTTPS to HTTP, or to any other scheme, is refused.

Google Drive answers a large file's address with a "can't scan this file for viruses" page: fetch
follows its "Download anyway" button (the same file id, on Drive) and downloads from there; a page
without one (quota exceeded, no longer shared) is refused with what it says. The Hugging Face hub is
asked through huggingface_hub for the file's record at the pinned revision (commit, size, SHA-256),
refused where it differs from the registry's, and the bytes come as above; with HF_HUB_OFFLINE set
fetch stops at once, saying so.

A resume sends If-Range with the ETag (else Last-Modified) of the answer the .part came from,
recorded beside it in NAME.part.json: a file changed on the server since is fetched again from
the start (also when a server ignores If-Range but its answer names another version), never
spliced; a .part with no such record is resumed only when its SHA-256 is pinned or recorded. An
answer that is a page (text, HTML, JSON: a "confirm the download" interstitial), whose first bytes
do not start the file's format (a checkpoint's zip or pickle, a safetensors header), or whose
stated size is outside the registry's bounds or larger than the free disk space is refused before
anything is written; a body that runs past the registry's size or maximum is stopped there and
removed. --timeout bounds each connect and read; a transfer slower than --speed-limit bytes/s over
any --speed-time seconds (curl's options; the response's headers must arrive within --speed-time)
is cut, then resumed as above.

`fetch` records each file's size and SHA-256 in weights.json beside them. Where the registry pins
no SHA-256 (the seven `original` files, SBI's and DeepfakeBench's: their hashes are not published),
the first download's is recorded and trusted on first use: later fetches and `verify` hold the file
to it, and `list` says, per file, whether its hash is pinned, trusted on first use, or unknown
(placed by hand). A file already in place is checked against the pinned and recorded size and hash
before `fetch` accepts it. `verify` checks each file the same way and reads it: the winner's as
its encoder's weights, the other detectors' in their authors' layout (weights only); a file placed
by hand is hashed, and once it has been read its hash is recorded in weights.json as trusted on
first use (with --no-load it is only reported: nothing checked it).

A named ensemble of the winner's is usable wherever a checkpoint list is: `inference.predict
--ensemble original`; the other sets name their detector (`detector_paths` gives its files).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import cli
from inference.models import google_drive
from inference.models.download import DownloadError, download, sha256
from inference.models.download_checks import Expected
from inference.models.download_transport import SpeedLimit
from inference.models.hugging_face import fetch_hub_file, offline_problem
from inference.models.weight_formats import first_bytes_check, format_problem, is_text
from inference.models.weights_manifest import (
    FETCHED,
    LEGACY,
    MANIFEST,
    PINNED,
    PLACED_BY_HAND,
    mismatch,
    read_manifest,
    record,
    size_note,
    trust_of,
)
from inference.models.weights_registry import (
    ENSEMBLES,
    WINNER,
    GoogleDrive,
    HuggingFace,
    NamedEnsemble,
    WeightFile,
)
from inference.models.weights_terms import TermsNotAcceptedError, accept, terms_lines

__all__ = ["ENSEMBLES", "FETCHED", "LEGACY", "MANIFEST", "PINNED", "PLACED_BY_HAND", "NamedEnsemble", "WeightFile"]

logger = logging.getLogger("inference.weights")


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


def _present(ensemble: NamedEnsemble, directory: Path) -> None:
    """Raise, saying how to fetch them, where files of `ensemble` are missing from `directory`."""
    missing = [f.name for f in ensemble.files if not (directory / f.name).is_file()]
    if missing:
        raise ValueError(
            f"{directory}: {len(missing)} of the {len(ensemble.files)} files of ensemble {ensemble.name!r} are "
            f"missing ({missing[0]}{', ...' if len(missing) > 1 else ''}); fetch them with "
            f"`python -m inference.weights fetch {ensemble.name}` (or put them there by hand)"
        )


def ensemble_entries(name: str, directory: Path | None = None) -> list[dict]:
    """The members of a named set as inference.predict reads an ensemble file's: the winner's
    checkpoints, or another detector's files (`detector` names it; companions such as GenD's
    config.json lie beside them); raise, saying how to fetch them, when a file is missing."""
    ensemble, directory = named_ensemble(name), Path(directory or default_weights_dir())
    _present(ensemble, directory)
    if ensemble.detector != WINNER:  # read by a detector that takes any file of its format: held to this set's
        for file in ensemble.checkpoints():
            problem = _in_use_problem(file, directory / file.name)
            if problem:
                raise ValueError(
                    f"{directory / file.name}: not {name}'s {file.name} ({problem}); fetch it again with "
                    f"`python -m inference.weights fetch {name}` (`verify {name}` says what is wrong)"
                )
    return [
        {
            "path": directory / f.name,
            "encoder": f.encoder if ensemble.detector == WINNER else None,
            "input_size": f.input_size if ensemble.detector == WINNER else None,
            "weight": 1.0,
            "detector": None if ensemble.detector == WINNER else ensemble.detector,
        }
        for f in ensemble.checkpoints()
    ]


def _in_use_problem(file: WeightFile, path: Path) -> str | None:
    """Why `path`, used as registry file `file`, is not it, checked at each use without hashing: its
    size against the registry's pin or bounds, and its layout against its format (the model it holds)."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        return f"{size} bytes, the registry pins {file.size}"
    if file.min_size is not None and file.max_size is not None and not file.min_size <= size <= file.max_size:
        return f"{size} bytes, outside the {size_note(file).removeprefix('size not published ')}"
    return format_problem(path, file.file_format)


def detector_paths(name: str, directory: Path | None = None) -> tuple[str, list[Path]]:
    """The detector that reads named set `name` and its checkpoints' paths (their companions, such
    as GenD's config.json, lie beside them); raise, saying how to fetch them, when a file is missing."""
    ensemble, directory = named_ensemble(name), Path(directory or default_weights_dir())
    _present(ensemble, directory)
    return ensemble.detector, [directory / f.name for f in ensemble.checkpoints()]


def _download_file(file: WeightFile, destination: Path, expected: Expected, timeout: float, speed: SpeedLimit) -> str:
    """Fetch one file from its source; return its SHA-256."""
    if isinstance(file.origin, HuggingFace):
        return fetch_hub_file(file.origin, destination, expected, timeout, speed)
    url, cookie = file.url, None
    if isinstance(file.origin, GoogleDrive):
        url, cookie = google_drive.resolve(file.url, file.origin.file_id, destination, timeout, speed)
    return download(url, destination, timeout=timeout, expected=expected, speed=speed, identity=file.url, cookie=cookie)


def fetch(
    name: str,
    directory: Path,
    timeout: float = 10.0,
    speed: SpeedLimit | None = None,
    accept_terms: Callable[[NamedEnsemble], str | None] | None = None,
) -> list[Path]:
    """Every file of a named set in `directory`, downloading those not there yet; a file already
    there is accepted only if it matches the registry's and weights.json's size and hash. Before
    the first download the set's terms are logged and `accept_terms(ensemble)` says how the user
    accepted them (recorded beside each file); a licence that asks acceptance stops the fetch
    without it (TermsNotAcceptedError), as HF_HUB_OFFLINE does for files of the hub."""
    ensemble, directory, speed = named_ensemble(name), Path(directory), speed or SpeedLimit()
    wanted = [f for f in ensemble.files if not (directory / f.name).is_file()]
    terms = None
    if wanted:
        problem = offline_problem(name, [directory / f.name for f in wanted if isinstance(f.origin, HuggingFace)])
        if problem:
            raise DownloadError(problem)
        for line in terms_lines(ensemble):
            logger.info("%s", line.strip())
        terms = accept_terms(ensemble) if accept_terms else None
        if ensemble.licence and ensemble.licence.must_accept and not terms:
            raise TermsNotAcceptedError(
                f"{name}: the terms of {ensemble.licence.name} were not accepted; nothing was downloaded"
            )
    fetched = []
    for file in ensemble.files:
        destination, entry = directory / file.name, read_manifest(directory).get(file.name)
        if destination.is_file():
            problem = mismatch(file, destination, entry)
            if problem:
                raise DownloadError(
                    f"{destination}: already here but {problem}; not accepted: delete it and run fetch again"
                )
            logger.info("%s: already here (%s)", destination, trust_of(file, entry))
        else:
            logger.info("fetching %s from %s", file.name, file.source())
            expected = Expected(
                size=file.size or (entry or {}).get("size"),
                sha256=file.sha256 or (entry or {}).get("sha256"),
                sha256_origin="pinned in the registry" if file.sha256 else f"recorded in {MANIFEST} on first use",
                min_size=file.min_size,
                max_size=file.max_size,
                first_bytes_problem=first_bytes_check(file.file_format),
                text_file=is_text(file.file_format),
            )
            digest = _download_file(file, destination, expected, timeout, speed)
            trust = PINNED if file.sha256 else (entry or {}).get("trust", FETCHED)
            record(directory, destination, digest, trust, terms)
            if not expected.sha256:
                logger.info("%s: SHA-256 %s recorded in %s, trusted on first use", file.name, digest, MANIFEST)
        fetched.append(destination)
    return fetched


@dataclass(frozen=True)
class Verdict:
    status: str  # "ok", "BAD", or "unchecked" (placed by hand, nothing to check it against, not loaded)
    detail: str
    digest: str | None = None  # the SHA-256 of a file placed by hand, to be recorded


def _read_problem(file: WeightFile, path: Path) -> str | None:
    """Why `path` does not read as `file` should (the winner's: into its encoder; others: in their
    authors' layout, weights only)."""
    if file.file_format != "winner-checkpoint":
        problem = format_problem(path, file.file_format)
        return problem and f"{problem} (read as {file.file_format})"
    from training.models.zoo import CheckpointError, create_model, load_weights, read_checkpoint

    try:
        load_weights(create_model(file.encoder), read_checkpoint(path)["state_dict"], str(path))
    except CheckpointError as error:
        return str(error).removeprefix(f"{path}: ")
    return None


def verify_file(file: WeightFile, directory: Path, manifest: dict, load: bool = True) -> Verdict:
    """Whether a file is what it should be: there, with the pinned or recorded size and SHA-256,
    and (with `load`) weights that read as its format says."""
    path, entry = directory / file.name, manifest.get(file.name)
    if not path.is_file():
        partial = path.with_name(path.name + ".part")
        if partial.is_file():
            return Verdict("BAD", f"missing ({partial.stat().st_size} bytes downloaded in {partial.name}: run fetch)")
        return Verdict("BAD", "missing")
    digest = sha256(path)
    problem = mismatch(file, path, entry, digest) or (_read_problem(file, path) if load else None)
    if problem:
        return Verdict("BAD", problem)
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
    """Per set: its description and how many of its files are here, its detector, licence and
    terms; then per file whether it is here and how its hash is known, and its source and size."""
    manifest, lines = read_manifest(directory), []
    for ensemble in ENSEMBLES.values():
        here = sum((directory / f.name).is_file() for f in ensemble.files)
        lines.append(f"{ensemble.name}: {ensemble.description}; {here} of {len(ensemble.files)} files in {directory}")
        licence = ensemble.licence
        said = f"{licence.name} ({licence.url})" if licence else "not recorded: check the source's terms yourself"
        lines.append(f"  detector: {ensemble.detector}; licence: {said}")
        if licence:
            accept_first = "; accept before download (--accept-terms)" if licence.must_accept else ""
            lines.append(f"  terms: {licence.terms}{accept_first}")
        for file in ensemble.files:
            path, partial = directory / file.name, directory / (file.name + ".part")
            state = f"{path.stat().st_size} bytes" if path.is_file() else "missing"
            if not path.is_file() and partial.is_file():
                state += f" ({partial.stat().st_size} bytes in {partial.name})"
            entry = manifest.get(file.name)
            accepted = f"; terms {entry['terms']}" if path.is_file() and entry and entry.get("terms") else ""
            lines.append(f"  {file.name}: {state}; {trust_of(file, entry, path.is_file())}{accepted}")
            lines.append(f"    from {file.source()}; {size_note(file)}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["list", "fetch", "verify"])
    parser.add_argument("name", nargs="?", help="the name of a set of weights, as `list` shows (fetch, verify)")
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
    parser.add_argument(
        "--accept-terms",
        action="store_true",
        help="fetch: accept the licence and terms of the weights, which fetch says before downloading (needed for "
        "weights whose terms restrict use, such as non-commercial research only, unless you answer yes when asked)",
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
        parser.error(f"{args.command} needs the name of a set of weights ({', '.join(sorted(ENSEMBLES))})")
    try:
        if args.command == "list":
            print("\n".join(list_files(directory)))
            return 0
        ensemble = named_ensemble(args.name)
        if args.command == "fetch":

            def say_and_accept(ensemble: NamedEnsemble) -> str | None:
                print("\n".join(terms_lines(ensemble)), flush=True)
                return accept(ensemble, args.accept_terms)

            fetch(args.name, directory, args.timeout, SpeedLimit(args.speed_limit, args.speed_time), say_and_accept)
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
