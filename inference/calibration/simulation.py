"""How many labelled videos of each class a calibration needs before it rarely makes things worse:
the simulation behind inference.calibrate's --min-per-class default.

    python -m inference.calibration.simulation [--trials 2000] [--per-class 3 5 8 10 15 20 30 50]

A classifier's logits are drawn per class from normal distributions, reals N(-m, s^2) and fakes
N(+m, s^2), so that the truth is known: with equal numbers of each class P(fake | z) =
sigmoid(2 m z / s^2), and the temperature that calibrates the scores exactly is s^2 / (2 m). Each
scenario has the same ranking quality (m / s = 1, AUC 0.92, about the demo's and a fair DFDC
model's) and differs in how the raw scores are miscalibrated:

- calibrated: T* = 1 (m = s = 2): a calibration has nothing to fix, only noise to add;
- over-confident: T* = 2.5 (m = s = 5), scores piled at 0 and 1 as long-trained nets give;
- under-confident: T* = 0.6 (m = s = 1.2), as the demo's briefly trained models (fitted 0.61);
- barely trained: T* = 0.1 (m = s = 0.2), scores 0.45 to 0.55 as in the issue's 8-video fit.

For each number n of videos per class, `trials` sets of n reals and n fakes are drawn, the
calibration fitted on each (inference.calibration.methods.fit_calibration, prior-corrected targets), and
its log loss on 20,000 fresh videos of the scenario compared with the raw scores'. A fit that the
search refuses (at a bound) counts as not stored, the raw scores kept. Reported per scenario and n:
how often the fresh log loss got worse at all, how often by more than 10% of the raw log loss
(a material loss), and the median change. Pure functions; `main` prints the table (a report).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from common.cli import positive_int
from inference.calibration.methods import FitAtBoundError, apply_calibration, fit_calibration
from inference.scoring.metrics import competition_log_loss

logger = logging.getLogger("inference.calibration.simulation")

FRESH_VIDEOS = 20_000
MATERIAL = 0.10  # a fresh log loss more than 10% above the raw one is a material loss


@dataclass(frozen=True)
class Scenario:
    name: str
    mean: float  # m: reals' logits ~ N(-m, s^2), fakes' ~ N(+m, s^2)
    spread: float  # s

    @property
    def ideal_temperature(self) -> float:
        return self.spread**2 / (2 * self.mean)


SCENARIOS = (
    Scenario("calibrated (T* 1)", 2.0, 2.0),
    Scenario("over-confident (T* 2.5)", 5.0, 5.0),
    Scenario("under-confident (T* 0.6)", 1.2, 1.2),
    Scenario("barely trained (T* 0.1)", 0.2, 0.2),
)


def draw(scenario: Scenario, reals: int, fakes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(labels, raw scores) of `reals` real and `fakes` fake videos of the scenario."""
    labels = np.r_[np.zeros(reals, np.int64), np.ones(fakes, np.int64)]
    logits = rng.normal(np.where(labels == 1, scenario.mean, -scenario.mean), scenario.spread)
    return labels, expit(logits)


def fitted_change(
    scenario: Scenario, per_class: int, method: str, fresh: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
) -> float:
    """Fresh log loss after minus before, for one calibration fitted on `per_class` videos of each
    class (0.0 where the fit is refused at a search bound: nothing would be stored)."""
    labels, scores = draw(scenario, per_class, per_class, rng)
    try:
        calibration = fit_calibration(labels, scores, method)
    except FitAtBoundError:
        return 0.0
    fresh_labels, fresh_scores = fresh
    before = competition_log_loss(fresh_labels, fresh_scores)
    return competition_log_loss(fresh_labels, apply_calibration(fresh_scores, calibration)) - before


def simulate(
    scenario: Scenario, per_class: int, method: str = "temperature", trials: int = 2000, seed: int = 0
) -> dict:
    """How a calibration fitted on `per_class` videos of each class does on fresh videos, over
    `trials` draws: `worse` (fraction with a higher fresh log loss than raw), `materially_worse`
    (more than MATERIAL of the raw log loss higher), `median_change`, and `raw_log_loss`."""
    rng = np.random.default_rng(seed)
    half = FRESH_VIDEOS // 2
    fresh = draw(scenario, half, half, rng)
    raw = competition_log_loss(*fresh)
    changes = np.array([fitted_change(scenario, per_class, method, fresh, rng) for _ in range(trials)])
    return {
        "scenario": scenario.name,
        "per_class": per_class,
        "method": method,
        "trials": trials,
        "raw_log_loss": raw,
        "worse": float((changes > 1e-12).mean()),
        "materially_worse": float((changes > MATERIAL * raw).mean()),
        "median_change": float(np.median(changes)),
    }


def table(rows: list[dict]) -> str:
    """The simulation's rows as printed."""
    header = f"{'scenario':<26}{'method':<13}{'n/class':>8}{'raw LL':>9}{'worse':>8}{'>10% worse':>12}{'median':>9}"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['scenario']:<26}{row['method']:<13}{row['per_class']:>8}{row['raw_log_loss']:>9.3f}"
            f"{row['worse'] * 100:>7.1f}%{row['materially_worse'] * 100:>11.1f}%{row['median_change']:>+9.3f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference.calibration.simulation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--trials", type=positive_int, default=2000, help="fits per scenario and size (2000)")
    parser.add_argument(
        "--per-class", type=positive_int, nargs="+", default=[3, 5, 8, 10, 15, 20, 30, 50], help="videos of each class"
    )
    parser.add_argument("--method", choices=("temperature", "platt"), nargs="+", default=["temperature", "platt"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("inference.calibration.methods").setLevel(logging.ERROR)  # bound fits: counted, not logged
    rows = [
        simulate(scenario, n, method, args.trials, args.seed)
        for method in args.method
        for scenario in SCENARIOS
        for n in args.per_class
    ]
    print(table(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
