"""What inference.calibrate prints and writes: the table of the fit, the line saying what became
of it, and the ensemble file (with its `calibration:` block, or without one where it was refused)."""

from __future__ import annotations

from pathlib import Path

import yaml

from common.io_utils import atomic_path
from common.safe_yaml import NoAliasSafeDumper

HEADER = "# calibration: written by python -m inference.calibrate\n"
UNCALIBRATED_HEADER = "# written by python -m inference.calibrate, without a calibration (it was refused)\n"


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def report_table(report: dict) -> str:
    """The fit, as printed on stdout."""
    metrics, held = report["metrics"], report.get("held_out", {}).get("metrics")
    parameters = ", ".join(f"{k} {_number(v)}" for k, v in report["parameters"].items() if k != "method")
    lines = [
        f"{report['parameters']['method']} calibration ({parameters}) fitted on {report['source']}",
        f"videos {metrics['videos']}, reals {metrics['real']}, fakes {metrics['fake']}"
        + (f"; held out: videos {held['videos']}, reals {held['real']}, fakes {held['fake']}" if held else ""),
        "".ljust(10) + "".join(c.rjust(10) for c in ["before", "after"] + (["held:bef", "held:aft"] if held else [])),
    ]
    for name in ("log_loss", "ece", "brier"):
        values = [metrics[f"{name}_before"], metrics[f"{name}_after"]]
        values += [held[f"{name}_before"], held[f"{name}_after"]] if held else []
        lines.append(name.ljust(10) + "".join(_number(v).rjust(10) for v in values))
    lines.append("operating points (FAKE when the ensemble's raw score is above `score`):")
    lines.append("".join(c.rjust(12) for c in ("fpr", "score", "probability", "reals", "rank")))
    for point in report["stored"]:
        values = [f"{point['fpr']:g}"] + [_number(point[c]) for c in ("score", "probability", "reals", "rank")]
        lines.append("".join(value.rjust(12) for value in values))
    for point in report["refused"]:
        lines.append(
            f"{point['fpr']:>12g}  not stored: needs {point['reals_needed']} real videos, {point['reals']} given"
        )
    return "\n".join(lines)


def stored_line(report: dict, out: Path) -> str:
    """The last line printed when the calibration is stored: the log loss it gives, raw and
    calibrated, on the held-out set where there is one (else on the videos it was fitted on)."""
    held = report.get("held_out", {}).get("metrics")
    metrics, where = (held, "held-out") if held else (report["metrics"], "fitted-on (no held-out set)")
    forced = f"; stored with --force over: {report['forced']}" if report.get("forced") else ""
    return (
        f"calibration stored in {out}: {where} log loss {metrics['log_loss_before']:.4f} raw, "
        f"{metrics['log_loss_after']:.4f} calibrated{forced}"
    )


def refused_line(reason: str, out: Path, held_out_log_loss: float | None) -> str:
    """The last line printed when a refused calibration leaves the ensemble uncalibrated."""
    held = "" if held_out_log_loss is None else f"; held-out log loss {held_out_log_loss:.4f} raw, as it stays"
    return f"calibration refused: {reason}; {out} written without one (uncalibrated){held}"


class _Dumper(NoAliasSafeDumper):
    """One line for a list of numbers (real_scores) and for each mapping of plain values in a list
    (a member, an operating point), as the documentation of the block shows them."""


def _plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _represent_list(dumper: _Dumper, items: list) -> yaml.Node:
    if all(_plain(item) for item in items):
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=True)
    nodes = [
        dumper.represent_mapping("tag:yaml.org,2002:map", item, flow_style=True)
        if isinstance(item, dict) and all(_plain(value) for value in item.values())
        else dumper.represent_data(item)
        for item in items
    ]
    return yaml.SequenceNode("tag:yaml.org,2002:seq", nodes, flow_style=False)


_Dumper.add_representer(list, _represent_list)


def write_calibrated(out: Path, document: dict, block: dict | None) -> None:
    """The ensemble file `out`: `document` with `block` as its `calibration:` (none where None)."""
    content = document if block is None else {**document, "calibration": block}
    text = yaml.dump(content, Dumper=_Dumper, sort_keys=False, width=100)
    with atomic_path(out) as temporary:
        temporary.write_text((HEADER if block is not None else UNCALIBRATED_HEADER) + text)
