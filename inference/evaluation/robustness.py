"""Robustness of a protocol's models to real-world distortions (inference.evaluate's `perturbations:`).

A test set of a protocol may carry

    perturbations:
      distortions: [CS, CC, BW, GNC, GB, resize, JPEG, VC, mixed]   # default: all of these
      levels: [1, 3, 5]                                            # default: 1 to 5
      seed: 0                                                      # default: 0

and every model of the protocol (each a row: checkpoints, a training run, or an ensemble file,
calibrated or not) then predicts the set again once per distortion and level, with predict's
`--perturb NAME:LEVEL --perturb-seed SEED`: DeeperForensics-1.0's distortions applied to each
video's sampled frames before face detection (inference/distortions/frame_perturbation.py; `mixed` chains 2
to 4 distortions, every step at the row's level). The predictions go to
DIR/predictions/MODEL/SET/perturbed/NAME_LEVEL/, cached as the clean ones are (the perturbation
and seed are part of what they were made from).

Outputs, per model and test set, a row for the clean set (distortion `clean`, level 0) and one per
distortion and level: video-level AUC, log loss and TPR at 5% FPR (with the real videos behind it;
'-' under the 19 reals it needs), each with its change from the clean set, signed so that positive
is worse: `video_auc_drop` = clean - perturbed, `log_loss_rise` = perturbed - clean,
`tpr_at_5pct_fpr_drop` = clean - perturbed.

TPR at 5% FPR picks its threshold from each row's own reals, so it cannot show real videos that a
distortion pushes over the threshold a deployment would have fixed on clean videos. Each row
therefore also has `tpr_at_clean_threshold` and `fpr_at_clean_threshold`: its fakes and reals
scoring above `clean_threshold`, the 5% FPR threshold picked from the CLEAN set's reals
(operating_points.threshold_at_fpr; '-' under 19 clean reals). A rising FPR there is the false
alarms the distortion adds. All on the submission's label (the calibrated probability of a
calibrated ensemble: a monotone map, so the same videos pass as on the raw score).

DIR/robustness.md, robustness.csv, robustness.json, and DIR/robustness_SET.png: per model a row of
panels (AUC, log loss, TPR at 5% FPR, FPR at the clean threshold) against the level, 0 being the
clean set, a line per distortion.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from common.io_utils import atomic_path, write_csv_atomic, write_json_atomic
from inference.distortions.frame_perturbation import canonical_name, check_level
from inference.distortions.perturbations import LEVELS
from inference.evaluation.evaluate_models import ModelSource, predict_set, predictions_dir
from inference.scoring.metrics import fpr_key, score
from inference.scoring.operating_points import conformal_rank, threshold_at_fpr
from inference.scoring.submission_scoring import align, read_labels, read_submission

logger = logging.getLogger("inference.evaluation.robustness")

DEFAULT_DISTORTIONS = ("CS", "CC", "BW", "GNC", "GB", "resize", "JPEG", "VC", "mixed")
CLEAN = "clean"
# What each code means, in DeeperForensics-1.0's words (Jiang et al., CVPR 2020) where it has them:
# legends and tables name the code with its meaning, not the code alone
DISTORTION_NAMES = {
    "CS": "colour saturation change",
    "CC": "colour contrast change",
    "BW": "local block-wise distortion",
    "GNC": "white Gaussian noise in colour components",
    "GB": "Gaussian blur",
    "resize": "down-and-up resize (the reference's 'JPEG')",
    "JPEG": "JPEG compression (a real one)",
    "VC": "video compression rate change (H.264)",
    "mixed": "2 to 4 of the above chained",
}
ROBUSTNESS_FPR = 0.05
# each metric, its column of change from the clean set, and whether a higher value is better
METRICS = {
    "video_auc": ("video_auc_drop", True, "video AUC"),
    "log_loss": ("log_loss_rise", False, "log loss"),
    "tpr_at_5pct_fpr": ("tpr_at_5pct_fpr_drop", True, "TPR at 5% FPR"),
}
# rates at the clean set's 5% FPR threshold, kept fixed under the distortion
AT_CLEAN_THRESHOLD = ["tpr_at_clean_threshold", "fpr_at_clean_threshold"]
COLUMNS = ["model", "test_set", "distortion", "level"]
COLUMNS += [column for metric, (change, _, _) in METRICS.items() for column in (metric, change)]
COLUMNS += [*AT_CLEAN_THRESHOLD, "clean_threshold", "reals"]
PANELS = {metric: title for metric, (_, _, title) in METRICS.items()}
PANELS["fpr_at_clean_threshold"] = "FPR at clean 5% threshold"


def read_perturbations(block) -> dict:
    """A test set's `perturbations:` block, checked, with its defaults: {distortions, levels, seed}."""
    block = {} if block is None else block
    if not isinstance(block, dict):
        raise ValueError(f"`perturbations:` must be a mapping of distortions, levels and seed, got {block!r}")
    unknown = sorted(set(block) - {"distortions", "levels", "seed"})
    if unknown:
        raise ValueError(f"`perturbations:` has unknown keys {', '.join(unknown)} (known: distortions, levels, seed)")
    distortions = block.get("distortions", list(DEFAULT_DISTORTIONS))
    levels = block.get("levels", list(LEVELS))
    if not isinstance(distortions, list) or not distortions or not isinstance(levels, list) or not levels:
        raise ValueError("`perturbations:` distortions and levels must be non-empty lists")
    names = [canonical_name(name) for name in distortions]
    if len(set(names)) != len(names):
        raise ValueError(f"`perturbations:` names a distortion twice: {names}")
    seed = block.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`perturbations:` seed must be a whole number, got {seed!r}")
    return {"distortions": names, "levels": sorted({check_level(level) for level in levels}), "seed": seed}


def clean_threshold(predictions: dict[str, float], labels: dict) -> float | None:
    """The 5% FPR threshold that the clean set's reals give (None under the 19 reals it needs)."""
    _, y, p, _ = align(predictions, labels)
    reals = p[y == 0]
    return threshold_at_fpr(reals, ROBUSTNESS_FPR) if conformal_rank(ROBUSTNESS_FPR, len(reals)) >= 1 else None


def rates_at_threshold(y: np.ndarray, p: np.ndarray, threshold: float | None) -> dict:
    """Fakes (TPR) and reals (FPR) scoring above `threshold`; None without a threshold or the class."""

    def above(values: np.ndarray) -> float | None:
        return None if threshold is None or not len(values) else float(np.mean(values > threshold))

    return {"tpr_at_clean_threshold": above(p[y == 1]), "fpr_at_clean_threshold": above(p[y == 0])}


def set_metrics(predictions: dict[str, float], labels: dict, threshold: float | None = None) -> dict:
    """Video AUC, log loss and TPR at 5% FPR (with the reals behind it) of one submission, and its
    TPR and FPR at `threshold` (the clean set's 5% FPR threshold; None where it has none)."""
    _, y, p, _ = align(predictions, labels)
    scores = score(y, p)
    operating_point = scores["tpr_at_fpr"][fpr_key(ROBUSTNESS_FPR)]
    return {
        "video_auc": scores["roc_auc"],
        "log_loss": scores["log_loss"],
        "tpr_at_5pct_fpr": operating_point["tpr"],
        **rates_at_threshold(y, p, threshold),
        "clean_threshold": threshold,
        "reals": operating_point["reals"],
        "reals_needed": operating_point["reals_needed"],
    }


def worsening(metric: str, clean: float | None, value: float | None) -> float | None:
    """How much worse `value` is than `clean` (positive: worse); None where either is missing."""
    if clean is None or value is None:
        return None
    higher_is_better = METRICS[metric][1]
    return clean - value if higher_is_better else value - clean


def robustness_row(model: str, test_set: str, distortion: str, level: int, metrics: dict, clean: dict) -> dict:
    row = {"model": model, "test_set": test_set, "distortion": distortion, "level": level}
    for metric, (change, _, _) in METRICS.items():
        row[metric] = metrics[metric]
        row[change] = worsening(metric, clean[metric], metrics[metric])
    for column in [*AT_CLEAN_THRESHOLD, "clean_threshold", "reals"]:
        row[column] = metrics[column]
    return row


def robustness_rows(model: str, test_set: str, clean: dict, perturbed: dict[tuple[str, int], dict]) -> list[dict]:
    """The clean row (level 0) and a row per (distortion, level) of `perturbed`, in its order."""
    rows = [robustness_row(model, test_set, CLEAN, 0, clean, clean)]
    rows += [robustness_row(model, test_set, name, level, m, clean) for (name, level), m in perturbed.items()]
    return rows


def robustness_json(rows: list[dict], specs: dict[str, dict]) -> dict:
    """{model: {set: {perturbations, clean, perturbed: {distortion: {level: row}}}}}."""
    nested: dict = {}
    for row in rows:
        entry = nested.setdefault(row["model"], {}).setdefault(
            row["test_set"], {"perturbations": specs[row["test_set"]], "clean": None, "perturbed": {}}
        )
        values = {key: row[key] for key in COLUMNS[4:]}
        if row["distortion"] == CLEAN:
            entry["clean"] = values
        else:
            entry["perturbed"].setdefault(row["distortion"], {})[str(row["level"])] = values
    return nested


def distortion_label(code: str) -> str:
    """`CODE: what it is` for a legend (the code alone where it has no name)."""
    return f"{code}: {DISTORTION_NAMES[code]}" if code in DISTORTION_NAMES else code


def legend_line(rows: list[dict]) -> str:
    """The codes of `rows`' distortions, each with what it is, in their order."""
    codes = [code for code in dict.fromkeys(r["distortion"] for r in rows) if code in DISTORTION_NAMES]
    return "; ".join(f"{code} {DISTORTION_NAMES[code]}" for code in codes)


def cell(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.4f}" if signed else f"{value:.4f}"
    return str(value)


MARKDOWN_COLUMNS = [column for column in COLUMNS if column != "clean_threshold"]  # the CSV and JSON have it


def markdown(rows: list[dict]) -> str:
    changes = {change for change, _, _ in METRICS.values()}
    header = ["model", "test set", "distortion", "level", "video AUC", "AUC drop", "log loss", "log loss rise"]
    header += ["TPR@5%FPR", "TPR drop", "TPR@clean 5% thr", "FPR@clean 5% thr", "reals"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---|" + "---:|" * 10]
    for row in rows:
        lines.append("| " + " | ".join(cell(row[c], signed=c in changes) for c in MARKDOWN_COLUMNS) + " |")
    lines += [
        "",
        f"Distortions: {legend_line(rows)}.",
        "",
        "Changes are from the clean set (level 0), positive where the distortion made it worse. TPR@5%FPR "
        "picks its threshold from each row's own reals; TPR and FPR @clean 5% thr are at the threshold "
        "picked from the clean set's reals, kept fixed: an FPR above the clean row's is real videos the "
        "distortion pushes over it. '-' where the set has fewer real videos than the finite-sample "
        "threshold needs (19). `mixed` chains 2 to 4 of DeeperForensics-1.0's seven distortions, the "
        "same chain for a video at every level, each step at the row's level.",
    ]
    return "\n".join(lines) + "\n"


def write_robustness(rows: list[dict], specs: dict[str, dict], out: Path) -> None:
    write_csv_atomic(out / "robustness.csv", rows, COLUMNS)
    write_json_atomic(out / "robustness.json", robustness_json(rows, specs))
    with atomic_path(out / "robustness.md") as temporary:
        temporary.write_text(markdown(rows))


def curve(rows: list[dict], metric: str) -> tuple[list[int], list[float]]:
    """(levels, values) of rows, NaN where the metric is missing."""
    return [r["level"] for r in rows], [math.nan if r[metric] is None else r[metric] for r in rows]


def plot_robustness(test_set: str, rows: list[dict], out: Path) -> Path:
    """DIR/robustness_SET.png: per model a row of panels (one per metric), a line per distortion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["test_set"] == test_set]
    models = list(dict.fromkeys(r["model"] for r in mine))
    figure, axes = plt.subplots(len(models), len(PANELS), figsize=(4.2 * len(PANELS), 3.3 * len(models)))
    axes = np.atleast_2d(axes)
    for model, panels in zip(models, axes, strict=True):
        clean = next(r for r in mine if r["model"] == model and r["distortion"] == CLEAN)
        distortions = list(dict.fromkeys(r["distortion"] for r in mine if r["distortion"] != CLEAN))
        for axis, (metric, title) in zip(panels, PANELS.items(), strict=True):
            for distortion in distortions:
                levels, values = curve(
                    [clean, *(r for r in mine if r["model"] == model and r["distortion"] == distortion)], metric
                )
                axis.plot(levels, values, marker="o", label=distortion_label(distortion))
            if all(r[metric] is None for r in mine if r["model"] == model):
                axis.text(
                    0.5, 0.5, "needs more videos\n(reals, or both classes)", ha="center", transform=axis.transAxes
                )
            axis.set(xlabel="level (0: clean)", title=f"{model}: {title}", xticks=range(0, LEVELS[-1] + 1))
            if metric != "log_loss":  # rates: on their whole range, so that models and sets compare
                axis.set_ylim(-0.03, 1.03)
        panels[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle(f"{test_set}: robustness to distortions")
    figure.tight_layout()
    path = out / f"robustness_{test_set}.png"
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    return path


def run_robustness(
    protocol: dict, sources: dict[str, ModelSource], sets: dict[str, tuple[Path, Path]], out: Path
) -> list[dict]:
    """Predict and score every model on every distortion and level of each set with `perturbations:`
    (after its clean predictions are made); write the robustness files. [] when no set has any."""
    specs = {t["name"]: read_perturbations(t["perturbations"]) for t in protocol["test_sets"] if "perturbations" in t}
    jobs = len(sources) * sum(len(spec["distortions"]) * len(spec["levels"]) for spec in specs.values())
    rows: list[dict] = []
    done = 0
    for model, source in sources.items():
        for name, spec in specs.items():
            folder, labels_path = sets[name]
            labels, clean_dir = read_labels(labels_path), predictions_dir(out, model, name)
            clean_predictions = read_submission(clean_dir / "submission.csv")
            threshold = clean_threshold(clean_predictions, labels)
            clean = set_metrics(clean_predictions, labels, threshold)
            perturbed = {}
            for distortion in spec["distortions"]:
                for level in spec["levels"]:
                    done += 1
                    what = f"model {model}, set {name}, {distortion} level {level}"
                    logger.info("robustness %d/%d: %s", done, jobs, what)
                    submission = clean_dir / "perturbed" / f"{distortion}_{level}" / "submission.csv"
                    options = {**(protocol.get("predict") or {}), "perturb": f"{distortion}:{level}"}
                    predict_set(source, folder, labels_path, submission, {**options, "perturb_seed": spec["seed"]})
                    perturbed[(distortion, level)] = set_metrics(read_submission(submission), labels, threshold)
            rows += robustness_rows(model, name, clean, perturbed)
    if rows:
        write_robustness(rows, specs, out)
        for name in specs:
            plot_robustness(name, rows, out)
    return rows
