"""The docs state every deliberate difference from the original solution, and the defaults that
reproduce it (docs/differences.md)."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def _section(title: str) -> str:
    text = (REPO_ROOT / "docs" / "differences.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/differences.md has no section '{title}'"
    return match.group(1)


def test_every_deliberate_difference_is_a_row_with_its_reason():
    rows = [line for line in _section("Differences from the original").splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]
    assert all(len(row) == 3 and all(row) for row in cells), "each row: the original | here | why"
    table = "\n".join(rows)
    for topic in (
        "127 faces",  # no face cap
        ".half()",  # fp16 autocast
        "shorter than 32 frames",  # frame de-duplication
        "IsotropicResize",  # three interpolation pairs
        "dlib",  # 5-point face hull
        "SSIM",  # clipped
        "half-size coordinates",  # box storage
        "bce_best",  # checkpoint format of our own training
    ):
        assert topic in table, topic


def test_the_detection_scale_default_and_its_reason_are_stated():
    section = _section("Face detection scale")
    assert "`0.5` is the default everywhere" in section and "`rule`" in section
    assert "only at that scale do\nthe released weights give the original's scores" in section
