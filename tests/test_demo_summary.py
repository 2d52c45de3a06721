"""./run_all.sh's closing figures: the run's own beside the ranges the README gives, from one file."""

from __future__ import annotations

import json
import re

import pytest

from common.cli import InputError
from inference.evaluation.demo_summary import FIGURES, main, measured, read_ranges, summary_lines
from tests.conftest import REPO_ROOT


def test_the_readme_quotes_the_ranges_the_summary_compares_with():
    ranges = read_ranges(FIGURES)
    section = re.search(r"### The demo figure\n(.*?)\n## ", (REPO_ROOT / "README.md").read_text(), re.S).group(1)
    for low, high in ranges.values():
        assert f"{low:.3f} to {high:.3f}" in section, (low, high)


def test_each_figure_is_read_from_the_run_and_placed_against_its_range(tmp_path, caplog):
    run = tmp_path / "weights" / "logs" / "demo_0_111"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"best_score": 0.2}))
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "score.json").write_text(json.dumps({"overall": {"log_loss": 0.9}}))
    values = measured(tmp_path, run)
    assert values == {"fold0_best_log_loss": 0.2, "test_log_loss": 0.9}
    lines = summary_lines(values, {"fold0_best_log_loss": (0.1, 0.3), "test_log_loss": (0.05, 0.2)})
    assert lines == [
        "fold 0's best validation log loss: 0.2000, within the README's range 0.100 to 0.300",
        "the test videos' log loss: 0.9000, OUTSIDE the README's range 0.050 to 0.200",
    ]
    assert summary_lines({}, {"fold0_best_log_loss": (0.1, 0.3), "test_log_loss": (0.05, 0.2)})[0] == (
        "fold 0's best validation log loss: not measured (README: 0.100 to 0.300)"
    )
    assert main(["--work-dir", str(tmp_path), "--fold0-run", str(run)]) == 0
    assert "OUTSIDE" in caplog.text


def test_a_broken_figures_file_is_named(tmp_path):
    broken = tmp_path / "figures.yaml"
    broken.write_text("fold0_best_log_loss: [0.1]\n")
    with pytest.raises(InputError, match="figures.yaml: cannot read the demo's figure ranges"):
        read_ranges(broken)
