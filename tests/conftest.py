"""Shared fixtures: a small demo world made once per session, and the optional ../shared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip when the sample data is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data {path} is absent (it lives in ../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    """6 training videos (2 real, 4 fake) and 2 test videos, as `make_demo_data` writes them."""
    from preprocess import make_demo_data

    out = tmp_path_factory.mktemp("demo") / "world"
    make_demo_data.main(["--out", str(out), "--videos", "6", "--test-videos", "2", "--seed", "1"])
    return out


def dfdc_metadata(root: Path) -> dict[Path, dict]:
    """{video path: metadata entry} over every dfdc_train_part_*/metadata.json under root."""
    entries = {}
    for metadata in sorted(root.glob("dfdc_train_part_*/metadata.json")):
        for name, entry in json.loads(metadata.read_text()).items():
            entries[metadata.parent / name] = entry
    return entries
