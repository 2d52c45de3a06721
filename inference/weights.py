"""Named ensembles of released checkpoints: list them, fetch them into a cache folder, verify them.

    python -m inference.weights list
    python -m inference.weights fetch original [--dir DIR]
    python -m inference.weights verify original [--dir DIR]

`original` is the original solution's final ensemble: seven EfficientNet-B7 checkpoints (fold 0,
seeds 111 to 999) from its GitHub release 0.0.1, bare state dicts scored at 380 px. Files go to
$DEEPFAKE_DETECTOR_WEIGHTS, else ~/.cache/deepfake-detector/weights ($XDG_CACHE_HOME honoured), or
--dir. A download is written to NAME.part and renamed when whole; a cut one resumes from where it
stopped (HTTP Range), by itself a few times and again at the next `fetch`. Where the host cannot
be reached, `fetch` fails within seconds and says where to put files fetched by other means.
`fetch` records each file's size and SHA-256 in weights.json beside them; `verify` checks each
file against that record and loads it as the ensemble's encoder (weights only).

A named ensemble is usable wherever a checkpoint list is: `inference.predict --ensemble original`.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from preprocess import cli
from preprocess.cli import InputError
from preprocess.io_utils import atomic_path

logger = logging.getLogger("inference.weights")

MANIFEST = "weights.json"


@dataclass(frozen=True)
class WeightFile:
    name: str
    url: str
    encoder: str
    input_size: int
    size: int | None = None  # bytes, where the publisher states it


@dataclass(frozen=True)
class NamedEnsemble:
    name: str
    description: str
    files: tuple[WeightFile, ...]


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
        tuple(WeightFile(name, _ORIGINAL_RELEASE + name, "tf_efficientnet_b7_ns", 380) for name in _ORIGINAL_FILES),
    ),
}


class DownloadError(InputError, RuntimeError):
    """A file could not be fetched; the message says which, why, and what to do."""


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
        {"path": directory / f.name, "encoder": f.encoder, "input_size": f.input_size, "weight": 1.0}
        for f in ensemble.files
    ]


def _total_size(response, start: int) -> int | None:
    """The whole file's size as the response states it (Content-Range of a partial answer)."""
    if response.status == 206:
        match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _download_once(url: str, partial: Path, timeout: float, expected_size: int | None, label: str) -> int | None:
    """Append what the server sends after `partial`'s bytes to it; the whole file's size as the
    server states it (None when it does not). A stated size other than `expected_size` is refused
    before anything is written."""
    start = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing after our bytes: the partial file is whole (or too long)
            return None
        raise DownloadError(f"{url}: the server answered HTTP {error.code} ({error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"{url}: cannot reach the host ({reason}); fetch the file by other means and put it at "
            f"{partial.with_suffix('')}"
        ) from None
    with response:
        if start and response.status != 206:  # the server ignored the range: start again
            start = 0
        total = _total_size(response, start)
        if expected_size is not None and total is not None and total != expected_size:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server's file has {total} bytes, expected {expected_size}")
        with (
            open(partial, "ab" if start else "wb") as out,
            tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False
            ) as bar,
        ):
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))
    return total


def download(
    url: str, destination: Path, expected_size: int | None = None, timeout: float = 10.0, attempts: int = 3
) -> Path:
    """Fetch `url` to `destination` through `destination`.part, resuming a transfer cut short up
    to `attempts` times; the file is renamed into place only when its size is the one stated (by
    `expected_size`, else by the server). A short .part is kept for the next call to resume."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    got, wanted = 0, expected_size
    for attempt in range(1, attempts + 1):
        try:
            total = _download_once(url, partial, timeout, expected_size, destination.name)
            wanted = expected_size or total or wanted
        except (http.client.HTTPException, OSError) as error:  # cut mid-transfer
            logger.warning("%s: %s", destination.name, type(error).__name__)
        got = partial.stat().st_size if partial.exists() else 0
        if wanted is None or got == wanted:
            os.replace(partial, destination)
            return destination
        if got > wanted:
            partial.unlink()
            raise DownloadError(f"{url}: got {got} bytes, expected {wanted}; the partial file was removed")
        if attempt < attempts:
            logger.warning("%s: cut after %d of %d bytes; resuming", destination.name, got, wanted)
            time.sleep(0.5 * attempt)
    raise DownloadError(f"{url}: the connection was cut after {got} of {wanted} bytes; run fetch again to resume")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable record of fetched files ({error})") from None


def record(directory: Path, files: list[Path]) -> None:
    """Add each file's size and SHA-256 to weights.json in `directory` (written whole or not at all)."""
    manifest = read_manifest(directory)
    for path in files:
        manifest[path.name] = {"size": path.stat().st_size, "sha256": sha256(path)}
    with atomic_path(Path(directory) / MANIFEST) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def fetch(name: str, directory: Path, timeout: float = 10.0) -> list[Path]:
    """Every file of a named ensemble in `directory`, downloading those not there yet."""
    fetched = []
    for file in named_ensemble(name).files:
        destination = directory / file.name
        if destination.is_file():
            logger.info("%s: already here", destination)
        else:
            logger.info("fetching %s", file.url)
            download(file.url, destination, file.size, timeout)
            record(directory, [destination])
        fetched.append(destination)
    return fetched


def verify_file(file: WeightFile, directory: Path, manifest: dict, load: bool = True) -> str | None:
    """What is wrong with a fetched file (None when nothing is): missing, a size or SHA-256 other
    than recorded or published, or weights that do not load into the encoder."""
    from training.zoo import CheckpointError, create_model, load_weights, read_checkpoint

    path = directory / file.name
    if not path.is_file():
        return "missing"
    size, known = path.stat().st_size, manifest.get(file.name, {})
    if file.size is not None and size != file.size:
        return f"{size} bytes, the release has {file.size}"
    if known and size != known["size"]:
        return f"{size} bytes, {known['size']} when fetched"
    if known and sha256(path) != known["sha256"]:
        return "SHA-256 differs from the one recorded when it was fetched"
    if load:
        try:
            load_weights(create_model(file.encoder), read_checkpoint(path)["state_dict"], str(path))
        except CheckpointError as error:
            return str(error).removeprefix(f"{path}: ")
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["list", "fetch", "verify"])
    parser.add_argument("name", nargs="?", help="ensemble name (fetch, verify)")
    parser.add_argument("--dir", type=Path, default=None, help=f"weights folder (default {default_weights_dir()})")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the host (default 10)")
    parser.add_argument("--no-load", action="store_true", help="verify: sizes and hashes only, no model built")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    directory = args.dir or default_weights_dir()
    if args.command == "list":
        for ensemble in ENSEMBLES.values():
            here = sum((directory / f.name).is_file() for f in ensemble.files)
            print(f"{ensemble.name}: {ensemble.description}; {here} of {len(ensemble.files)} files in {directory}")
        return 0
    if not args.name:
        parser.error(f"{args.command} needs an ensemble name ({', '.join(sorted(ENSEMBLES))})")
    try:
        ensemble = named_ensemble(args.name)
        if args.command == "fetch":
            fetch(args.name, directory, args.timeout)
            print(f"{args.name}: {len(ensemble.files)} files in {directory}")
            return 0
        manifest = read_manifest(directory)
        problems = {f.name: verify_file(f, directory, manifest, not args.no_load) for f in ensemble.files}
    except (ValueError, DownloadError) as error:
        return cli.fail(error)
    for name, problem in problems.items():
        print(f"{'ok' if problem is None else 'BAD'}  {name}{'' if problem is None else f': {problem}'}")
    return 0 if not any(problems.values()) else 2


if __name__ == "__main__":
    sys.exit(cli.run(main))
