"""Exit 0 when every requirement of a requirements file is installed at an allowed version.

Standard library only (plus `packaging` when present), so it runs before anything is installed
and answers in a fraction of a second; prints what is missing or too old, one line each.
Usage: python tools/check_requirements.py requirements.txt
"""

from __future__ import annotations

import re
import sys
from importlib import metadata


def requirement_lines(path: str) -> list[str]:
    lines = []
    with open(path) as handle:
        for raw in handle:
            line = raw.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                lines.append(line)
    return lines


def problems(lines: list[str]) -> list[str]:
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["the 'packaging' module is missing, so versions cannot be checked"]
    found = []
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            found.append(f"{requirement.name}: not installed")
            continue
        local_free = re.sub(r"\+.*$", "", installed)
        if requirement.specifier and not requirement.specifier.contains(local_free, prereleases=True):
            found.append(f"{requirement.name}: {installed} installed, {requirement.specifier} required")
    return found


def main() -> int:
    if any(argument in ("-h", "--help") for argument in sys.argv[1:]):
        print(__doc__.strip())
        return 0
    path = sys.argv[1] if len(sys.argv) > 1 else "requirements.txt"
    missing = problems(requirement_lines(path))
    for line in missing:
        print(line)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
