"""The demo's figures beside the ranges the README gives for them, at the end of ./run_all.sh.

    python -m inference.evaluation.demo_summary --work-dir work --fold0-run work/weights/logs/demo_0_111

The ranges (docs/demo_figures.yaml) were measured by ./run_all.sh from fresh clones with several
training seeds: the demo trains bit-identically run to run on one machine, but a CPU of another
make picks other oneDNN kernels and lands elsewhere in the range (docs/demo.md, "The demo figure"). A
figure outside its range is said so (a warning, not an error: the run itself succeeded).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from common import cli, safe_yaml
from common.cli import InputError

logger = logging.getLogger("inference.evaluation.demo_summary")

FIGURES = Path(__file__).resolve().parents[2] / "docs" / "demo_figures.yaml"
# figure -> (its JSON file: in the fold-0 run's folder or under WORK_DIR, the key path in it, what it is)
SOURCES = {
    "fold0_best_log_loss": ("{fold0_run}/summary.json", ("best_score",), "fold 0's best validation log loss"),
    "test_log_loss": ("{work_dir}/submission/score.json", ("overall", "log_loss"), "the test videos' log loss"),
}


def read_ranges(path: Path) -> dict[str, tuple[float, float]]:
    """{figure: (low, high)} of the figures file."""
    try:
        document = safe_yaml.safe_load(Path(path).read_text())
        return {name: (float(document[name][0]), float(document[name][1])) for name in SOURCES}
    except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError, ValueError) as error:
        raise InputError(f"{path}: cannot read the demo's figure ranges ({error})") from None


def measured(work_dir: Path, fold0_run: Path) -> dict[str, float | None]:
    """{figure: the run's value, or None where the run did not write it}."""
    values = {}
    for name, (pattern, keys, _) in SOURCES.items():
        try:
            value = json.loads(Path(pattern.format(work_dir=work_dir, fold0_run=fold0_run)).read_text())
            for key in keys:
                value = value[key]
            values[name] = float(value)
        except (OSError, ValueError, KeyError, TypeError):
            values[name] = None
    return values


def summary_lines(values: dict[str, float | None], ranges: dict[str, tuple[float, float]]) -> list[str]:
    lines = []
    for name, (_, _, what) in SOURCES.items():
        low, high = ranges[name]
        value = values.get(name)
        if value is None:
            lines.append(f"{what}: not measured (README: {low:.3f} to {high:.3f})")
            continue
        verdict = "within" if low <= value <= high else "OUTSIDE"
        lines.append(f"{what}: {value:.4f}, {verdict} the README's range {low:.3f} to {high:.3f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.evaluation.demo_summary", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--work-dir", type=Path, default=Path("work"), help="./run_all.sh's WORK_DIR (default work)")
    parser.add_argument("--fold0-run", type=Path, required=True, help="the fold-0 training run's log folder")
    parser.add_argument("--figures", type=Path, default=FIGURES, help="the ranges (default docs/demo_figures.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    values = measured(args.work_dir, args.fold0_run)
    for line in summary_lines(values, read_ranges(args.figures)):
        (logger.warning if "OUTSIDE" in line else logger.info)(line)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
