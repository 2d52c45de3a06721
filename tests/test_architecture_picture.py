"""tools/draw_architecture.py draws docs/architecture.png from the code's imports."""

from __future__ import annotations

from tests.conftest import REPO_ROOT
from tools import draw_architecture
from tools.layout_rules import INFERENCE_ORDER, STAGES


def _rank(package: str) -> tuple[int, int]:
    stage, _, sub = package.partition(".")
    inner = INFERENCE_ORDER.index(sub) if sub in INFERENCE_ORDER else len(INFERENCE_ORDER)
    return STAGES.index(stage.split(" ")[0]), inner


def test_the_arrows_are_the_packages_imports_and_all_point_down():
    edges = draw_architecture.package_edges()
    assert edges["inference.pipeline", "preprocess"] >= 1  # faces are found with preprocess's MTCNN
    assert edges["inference (commands)", "inference.prediction"] >= 1
    assert ("preprocess", "training") not in edges and ("common", "preprocess") not in edges
    assert all(_rank(target) < _rank(source) for source, target in edges), "an arrow that goes up"
    counts = draw_architecture.module_counts()
    assert (
        counts["inference (commands)"] == 9 and counts["common"] == len(list((REPO_ROOT / "common").glob("*.py"))) - 1
    )


def test_the_picture_is_drawn(tmp_path):
    out = tmp_path / "architecture.png"
    assert draw_architecture.main(["--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 50_000
    assert not list(tmp_path.glob(".*partial*"))
    assert (REPO_ROOT / "docs" / "architecture.png").is_file()
