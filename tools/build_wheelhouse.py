"""Build a wheelhouse for a GPU host that cannot reach a package index: the wheels that
tools/gpu_check.sh's four GPU steps need and the host lacks, nothing the host has.

    on the host:  python3 -m pip list --format=freeze > host.txt
    here:         python3 tools/build_wheelhouse.py OUT --host-freeze host.txt \\
                      [--python-version 3.11 --platform manylinux_2_28_x86_64] [--max-mb 60]
    on the host:  python3 -m pip install --no-index --find-links OUT -r OUT/requirements.txt
                  GPU_CHECK_NO_INSTALL=1 tools/gpu_check.sh --steps train_fp16,ddp_syncbn,predict_fp16,bench_b7

Without --host-freeze the host is taken to have --host-has (default: torch, timm,
opencv-python-headless, pandas and scikit-learn at requirements.txt's versions) and what they
pull, as the index resolves them today. The GPU steps' lines of requirements.txt are resolved as
pip on the host would resolve them: in a scratch environment holding a metadata-only stand-in for
each of the host's packages, with the host's versions as constraints, so that nothing the host has
is downloaded or replaced (a requirement that only another version of a host package could meet
stops the build, with pip's reason). Each wheel that resolution installs is then downloaded
(--no-deps --only-binary=:all:, for --python-version/--platform when given: those need pip 23.3 or
later; markers are evaluated for the Python running this, so run it with the host's Python version
when you can). The web page (gradio) and OpenVINO are left out: the suite step needs them.
Where the requirements allow it, a smaller release is taken (SMALLER_RELEASES: stringzilla 3.x, the
line albucore 0.0.24 was released against, 0.3 MB where 5.1.2 and later weigh 4.2 MB), unless the host
has that package; when the requirements no longer allow it, the newest is taken, with a warning.

OUT gets the wheels, requirements.txt (the lines to install) and host.txt (the host assumed); it
is written under a temporary name and renamed, and is refused when it exists. The last line of
standard output is a JSON summary (the wheels, their weight in MB and MiB, the install command); the
exit status is 1 when the wheelhouse weighs more than --max-mb (decimal megabytes; it is kept), 2 on
bad input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_requirements  # noqa: E402

HOST_HAS = ("torch", "timm", "opencv-python-headless", "pandas", "scikit-learn")
MAX_MB = 60.0  # decimal megabytes, as the "under 60 MB"
MB, MIB = 10**6, 2**20
# Releases the requirements allow that weigh far less than the newest: stringzilla 5.1.2 and later
# ship a 15 MB library (a 4.2 MB wheel; 3.12.6's is 0.3 MB). albucore 0.0.24, which albumentations
# 2.0.8 pins, asks for stringzilla>=3.10.4, was released against 3.x and uses only its translate
# (uint8 look-up tables), whose results the opt-in test compares with this machine's.
SMALLER_RELEASES = ("stringzilla<4",)
PLATFORM_PIP = (23, 3)  # the first pip whose `install --dry-run` takes --platform and --python-version
FREEZE_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")
PYTHON_VERSION = re.compile(r"\d+(\.\d+){0,2}")  # pip's --python-version: 3, 3.11, 3.11.4 or 311
PLATFORM_TAG = re.compile(r"[A-Za-z0-9_.]+")  # a wheel's platform tag: manylinux_2_28_x86_64, win_amd64

logger = logging.getLogger("build_wheelhouse")


class BuildError(Exception):
    """The wheelhouse cannot be built; the message says why, in one line."""


def parse_freeze(path: Path) -> dict[str, str]:
    """`name==version` lines (`pip list --format=freeze`) as {canonical name: version}."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise BuildError(f"{path}: cannot be read ({error})") from None
    host = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = FREEZE_LINE.match(line)
        if not match:
            raise BuildError(
                f"{path}:{number}: {line!r} is not name==version (write the file with: pip list --format=freeze)"
            )
        host[gpu_requirements.canonical_name(match.group(1))] = match.group(2)
    if not host:
        raise BuildError(f"{path}: no name==version line (write it with: pip list --format=freeze)")
    return host


def platform_tags(platform: str) -> list[str]:
    """`platform` and, for manylinux_2_N, every older glibc's tag (legacy aliases too), newest first:
    pip takes a --platform as that tag alone, and most wheels name an older glibc than the host's."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not match:
        return [platform]
    newest, arch = int(match.group(1)), match.group(2)
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(newest, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


def pip_version() -> tuple[int, ...]:
    from pip import __version__

    return tuple(int(part) for part in re.findall(r"\d+", __version__)[:2])


def stand_in_environment(root: Path, host: dict[str, str]) -> str:
    """A virtual environment under `root` whose only installed distributions are metadata-only
    stand-ins for `host`'s, and this Python's pip; its Python."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(root)
    python = str(root / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    where = [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    site_packages = Path(subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip())
    (site_packages / "pip").symlink_to(importlib.util.find_spec("pip").submodule_search_locations[0])
    for name, version in host.items():
        if name == "pip":
            continue
        info = site_packages / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return python


def pip_failure(output: str) -> str:
    """pip's errors and the cause of a conflict it names, from its output, in one line."""
    kept, in_cause = [], False
    for line in output.splitlines():
        if line.startswith("The conflict is caused by"):
            in_cause = True
        elif not (in_cause and line.startswith(" ")):
            in_cause = False
        if in_cause or line.startswith("ERROR"):
            kept.append(line.strip())
    kept = kept or [line.strip() for line in output.splitlines() if line.strip()][-6:]
    return " | ".join(kept if len(kept) <= 12 else [*kept[:10], "...", kept[-1]])


def run_pip(python: str, args: list[str], what: str) -> None:
    command = [python, "-m", "pip", "--disable-pip-version-check", *args]
    logger.info("%s: %s", what, shlex.join(command))
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"{what}: pip exited {result.returncode}: {pip_failure(result.stdout)}")


def resolve(python: str, lines: list[str], constraints: Path | None, target: list[str], pip_args: list[str]) -> dict:
    """{canonical name: version} of what `pip install lines` would install in `python`'s environment."""
    with tempfile.TemporaryDirectory(prefix="wheelhouse-report-") as scratch:
        report = Path(scratch) / "report.json"
        args = ["install", "--dry-run", "--report", str(report), "--only-binary=:all:", *target, *pip_args]
        if constraints:
            args += ["--constraint", str(constraints)]
        run_pip(python, [*args, *lines], f"resolving {' '.join(lines)}")
        items = json.loads(report.read_text())["install"]
    return {gpu_requirements.canonical_name(item["metadata"]["name"]): item["metadata"]["version"] for item in items}


def host_from_index(names, scratch: Path, target: list[str], pip_args: list[str]) -> dict[str, str]:
    """What a host that installed `names` (at requirements.txt's versions) has, as the index resolves it."""
    python = stand_in_environment(scratch / "empty", {})
    return resolve(python, gpu_requirements.requirement_lines(names), None, target, pip_args)


def wheel_sizes(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in sorted(folder.glob("*.whl"))}


def smaller_releases(host: dict[str, str]) -> list[str]:
    """SMALLER_RELEASES' lines for the packages the host lacks (the host's own version stands)."""
    name = gpu_requirements.canonical_name
    return [line for line in SMALLER_RELEASES if name(gpu_requirements.requirement_name(line)) not in host]


def resolve_preferring_smaller(python: str, needs: list[str], constraints: Path, smaller: list[str], target, pip_args):
    """resolve() with `smaller` added to the host's constraints, and `smaller`; without them (and
    []) when the requirements no longer allow those releases, with a warning."""
    if smaller:
        preferred = constraints.with_name("preferred.txt")
        preferred.write_text(constraints.read_text() + "".join(f"{line}\n" for line in smaller))
        try:
            return resolve(python, needs, preferred, target, pip_args), smaller
        except BuildError as error:
            logger.warning("with %s: %s; resolving with the newest releases", ", ".join(smaller), error)
    return resolve(python, needs, constraints, target, pip_args), []


def download_missing(folder: Path, needs: list[str], host: dict[str, str], target: list[str], pip_args: list[str]):
    """Into `folder`: the wheels installing `needs` on a host with `host` adds, requirements.txt
    (`needs`) and host.txt (`host`); the lines of SMALLER_RELEASES those wheels meet."""
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as scratch:
        constraints = Path(scratch) / "host.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(host.items())))
        python = stand_in_environment(Path(scratch) / "host", host)
        smaller = smaller_releases(host)
        wanted, smaller = resolve_preferring_smaller(python, needs, constraints, smaller, target, pip_args)
        replaced = sorted(f"{name} {host[name]} by {version}" for name, version in wanted.items() if name in host)
        if replaced:  # the constraints forbid it: a stand-in pip did not see
            raise BuildError(f"resolving would replace the host's {', '.join(replaced)}")
        if wanted:
            pins = [f"{name}=={version}" for name, version in sorted(wanted.items())]
            download = ["download", "--no-deps", "--only-binary=:all:", "--dest", str(folder), *target, *pip_args]
            run_pip(python, [*download, *pins], f"downloading {len(pins)} wheels")
        shutil.copyfile(constraints, folder / "host.txt")
    (folder / "requirements.txt").write_text("".join(f"{line}\n" for line in needs))
    return smaller


def build(
    out: Path,
    needs: list[str],
    host: dict[str, str],
    target: list[str] = (),
    pip_args: list[str] = (),
) -> dict:
    """Download into `out` the wheels that installing `needs` on a host with `host` adds; the summary."""
    target, pip_args = list(target), list(pip_args)
    if out.exists():
        raise BuildError(f"{out}: exists; remove it or name another folder")
    if target and pip_version() < PLATFORM_PIP:
        have, need = (".".join(map(str, version)) for version in (pip_version(), PLATFORM_PIP))
        raise BuildError(
            f"pip {have} cannot resolve for --python-version/--platform (pip {need} or later can: "
            "python3 -m pip install --upgrade pip, in a virtual environment if need be)"
        )
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        smaller = download_missing(partial, needs, host, target, pip_args)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    sizes = wheel_sizes(partial)
    partial.rename(out)
    install = f"python3 -m pip install --no-index --find-links {out} -r {out / 'requirements.txt'}"
    total = sum(sizes.values())
    return {
        "wheelhouse": str(out),
        "wheels": len(sizes),
        "bytes": total,
        "mb": round(total / MB, 1),
        "mib": round(total / MIB, 1),
        "sizes_mb": {name: round(size / MB, 2) for name, size in sorted(sizes.items(), key=lambda item: -item[1])},
        "host_packages": len(host),
        "smaller_releases": smaller,
        "target": target,
        "install": install,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python tools/build_wheelhouse.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="the wheelhouse folder to make (must not exist)")
    host = parser.add_mutually_exclusive_group()
    host.add_argument("--host-freeze", type=Path, help="the host's `pip list --format=freeze`")
    host.add_argument("--host-has", nargs="+", default=list(HOST_HAS), help=f"default: {' '.join(HOST_HAS)}")
    parser.add_argument("--python-version", help="the host's Python, as pip download's (e.g. 3.11)")
    parser.add_argument(
        "--platform",
        action="append",
        help="the host's wheel platform, as pip download's (repeatable; manylinux_2_N takes in older glibc's tags)",
    )
    parser.add_argument("--max-mb", type=float, default=MAX_MB, help=f"decimal megabytes (default {MAX_MB:g})")
    parser.add_argument("--pip-arg", action="append", default=[], help="passed to pip (e.g. --pip-arg=--no-index)")
    return parser.parse_args(argv)


def argument_problem(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot make a wheelhouse, or None: checked before any environment is made
    or pip runs (a --max-mb of nan compared false and let any weight through; -1 failed only after
    the whole build; --python-version banana only once pip was run in a new environment)."""
    if not (math.isfinite(args.max_mb) and args.max_mb > 0):
        return f"--max-mb must be a number of MB above 0, got {args.max_mb:g}"
    if args.python_version is not None and not PYTHON_VERSION.fullmatch(args.python_version):
        return f"--python-version must be like 3.11 (or 3, 3.11.4, 311), got {args.python_version!r}"
    for platform in args.platform or []:
        if not PLATFORM_TAG.fullmatch(platform):
            return f"--platform must be a wheel platform tag like manylinux_2_28_x86_64, got {platform!r}"
    if args.out.exists():
        return f"{args.out}: exists; remove it or name another folder"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    problem = argument_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    target = ["--python-version", args.python_version] if args.python_version else []
    for platform in args.platform or []:
        for tag in platform_tags(platform):
            target += ["--platform", tag]
    try:
        needs = gpu_requirements.requirement_lines(gpu_requirements.GPU_STEP_PACKAGES)
        if args.host_freeze:
            host = parse_freeze(args.host_freeze)
        else:
            with tempfile.TemporaryDirectory(prefix="wheelhouse-host-") as scratch:
                host = host_from_index(args.host_has, Path(scratch), target, args.pip_arg)
        summary = build(args.out, needs, host, target, args.pip_arg)
    except (BuildError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    if summary["bytes"] > args.max_mb * MB:
        weight = f"{summary['bytes'] / MB:.2f} MB ({summary['mib']} MiB)"
        print(f"error: {args.out} weighs {weight}, over --max-mb {args.max_mb:g}", file=sys.stderr)
        return 1
    logger.info("%d wheels, %.1f MB; on the host: %s", summary["wheels"], summary["mb"], summary["install"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
