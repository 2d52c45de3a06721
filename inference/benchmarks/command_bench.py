"""Whole commands timed against each other: the original's code, inference.predict, and predict --fast.

    python -m inference.benchmarks.command_bench --test-dir DIR --models CKPT --encoder E [--size N]
        [--rounds 2] [--json FILE]

Each round runs, one after another, `python -m inference.benchmarks.original_baseline` (the original's
predict_folder.py as one process: inference/benchmarks/original_baseline.py), `python -m inference.predict`
and `python -m inference.predict --fast` on the same folder, each a fresh process timed from start
to exit: imports, model loading, every video, the files written. A first round, untimed, warms the
disk cache and OpenVINO's export cache, so the figures are a warm machine's. The report gives each
command's seconds per round, the load average before each run and the CPU seconds the rest of the
machine used during it (seconds measured beside other work are noise: docs/speed.md, "Measuring it"), the
speed-ups of the best rounds over the original's best, the CPU (inference/benchmarks/bench_report.py), and the
largest score differences between the commands' outputs.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cli
from inference.benchmarks.bench_report import emit_report, load_average, machine

logger = logging.getLogger("inference.benchmarks.command_bench")

COMMANDS = {
    "original": ["-m", "inference.benchmarks.original_baseline"],
    "exact": ["-m", "inference.predict"],
    "fast": ["-m", "inference.predict", "--fast"],
}


def scores(path: Path) -> dict[str, float]:
    with open(path, newline="") as handle:
        return {row["filename"]: float(row["label"]) for row in csv.DictReader(handle)}


def largest_difference(first: dict[str, float], second: dict[str, float]) -> tuple[float, str | None]:
    """The largest score difference between two outputs over their common videos, and its video."""
    return max(((abs(first[name] - second[name]), name) for name in first.keys() & second.keys()), default=(0.0, None))


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since it started (Linux /proc/stat; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    except (OSError, ValueError, IndexError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run(name: str, models: list[str], test_dir: Path, output: Path) -> tuple[float, float | None]:
    """Seconds `name`'s command took on `test_dir`, from start to exit, and the CPU seconds the rest
    of the machine used meanwhile (other work: what makes a figure noise); a failure stops the bench."""
    command = [sys.executable, *COMMANDS[name], "--test-dir", str(test_dir), *models, "--output", str(output)]
    busy, children = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise cli.InputError(f"{name}: {' '.join(command)} failed ({result.returncode}): {result.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    busy_after = busy_cpu_seconds()
    others = None if busy is None or busy_after is None else round(max(0.0, busy_after - busy - own), 1)
    return seconds, others


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.benchmarks.command_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--test-dir", type=Path, required=True)
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="checkpoints")
    parser.add_argument("--encoder", help="encoder of bare checkpoints")
    parser.add_argument("--size", type=int, help="input size of bare checkpoints")
    parser.add_argument("--rounds", type=cli.positive_int, default=2, help="timed rounds of the three commands (2)")
    parser.add_argument("--commands", nargs="+", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    models = ["--models", *map(str, args.models)]
    models += [
        *(["--encoder", args.encoder] if args.encoder else []),
        *(["--size", str(args.size)] if args.size else []),
    ]
    seconds: dict[str, list[float]] = {name: [] for name in args.commands}
    loads: dict[str, list] = {name: [] for name in args.commands}
    others: dict[str, list] = {name: [] for name in args.commands}
    with tempfile.TemporaryDirectory(prefix="command-bench-") as folder:
        outputs = {name: Path(folder) / name / "submission.csv" for name in args.commands}
        for round_number in range(args.rounds + 1):  # round 0 warms the caches, untimed
            for name in args.commands:
                before = load_average()
                took, elsewhere = run(name, models, args.test_dir, outputs[name])
                logger.info(
                    "round %d, %s: %.1f s (load average before %s; other work meanwhile: %s CPU s)",
                    round_number,
                    name,
                    took,
                    before,
                    elsewhere,
                )
                if round_number:
                    seconds[name].append(round(took, 2))
                    loads[name].append(before)
                    others[name].append(elsewhere)
        results = {name: scores(path) for name, path in outputs.items()}
    best = {name: min(values) for name, values in seconds.items()}
    report = {
        "machine": machine(),
        "videos": len(next(iter(results.values()))),
        "seconds": seconds,
        "load_average_before": loads,
        "other_work_cpu_s": others,
        "best_s": best,
        "speedup_over_original": (
            {name: round(best["original"] / best[name], 2) for name in best if name != "original"}
            if "original" in best
            else None
        ),
        "max_score_difference": {
            f"{first}_vs_{second}": largest_difference(results[first], results[second])
            for first, second in (("exact", "original"), ("fast", "exact"))
            if first in results and second in results
        },
    }
    emit_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
