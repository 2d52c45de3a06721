"""`fitted_on`, the record of what a calibration block was fitted on, checked field by field.

inference.calibrate writes it (inference/fitting/calibrate_ensemble.py `calibration_block`): where the scores came
from, how many videos of each class, the log loss, ECE and Brier score before and after, the
method, the date, the held-out set's own record, and whether --force stored it over a refusal.
The verdicts of detect and the page repeat it in their JSON, so a value no JSON can hold (a NaN,
an infinity, a YAML date) made every file's verdict fail with an error that blamed the file. Each
field is checked when the block is read, and a field that is not known is refused: the error
names the ensemble file and the field.
"""

from __future__ import annotations

import datetime
import numbers
import reprlib

from common.bounded_numbers import number_within, shown
from inference.calibration.methods import METHODS

COUNTS = ("videos", "real", "fake")
# the fit's metrics (inference/fitting/calibration_guard.py fit_metrics): name -> the range it lies in
METRICS = {
    **{f"log_loss_{when}": (0.0, 100.0) for when in ("before", "after")},  # at most -log(1e-15) = 34.5, clipped
    **{f"{name}_{when}": (0.0, 1.0) for name in ("ece", "brier") for when in ("before", "after")},
}
MAX_COUNT = 10**9
MAX_TEXT = 100_000  # characters of a text field (a source lists run folders; `forced_over` its reasons)
HELD_OUT_FIELDS = {"source", "scores", "settings", *COUNTS, *METRICS}
FIELDS = {"source", "scores", "method", "date", "forced", "forced_over", "held_out", *COUNTS, *METRICS}


def _text_problem(value) -> str | None:
    if not isinstance(value, str):
        return f"must be text, got {type(value).__name__} {value!r:.80}"
    if len(value) > MAX_TEXT:
        return f"is {len(value)} characters long, more than {MAX_TEXT}"
    return None


def _count_problem(value) -> str | None:
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or not 0 <= value <= MAX_COUNT:
        return f"must be a whole number from 0 to {MAX_COUNT}, got {shown(value)}"
    return None


def _metric_problem(value, low: float, high: float) -> str | None:
    if number_within(value, low, high) is None:
        return f"must be a finite number from {low:g} to {high:g}, got {shown(value)}"
    return None


def _field_problem(key: str, value) -> str | None:
    """Why `value` cannot be `fitted_on`'s (or its held-out set's) field `key`, or None."""
    if key in COUNTS:
        return _count_problem(value)
    if key in METRICS:
        return _metric_problem(value, *METRICS[key])
    if key in ("source", "scores", "forced_over", "date"):
        return _text_problem(value)
    if key == "method":
        return None if value in METHODS else f"must be one of {', '.join(METHODS)}, got {value!r:.80}"
    if key == "forced":
        return None if isinstance(value, bool) else f"must be true or false, got {value!r:.80}"
    return None  # held_out: checked on its own; held_out.settings: with the block's settings (read_calibration)


def _checked(record, fields: set[str], where: str) -> dict:
    """`record` with a YAML date as ISO text; a ValueError saying why it is not a record of `fields`."""
    if not isinstance(record, dict):
        raise ValueError(f"`{where}` must be a mapping, got {record!r:.80}")
    unknown = sorted(reprlib.repr(key) for key in record if key not in fields)
    if unknown:
        known = ", ".join(sorted(fields))
        raise ValueError(f"`{where}` has fields that are not known: {', '.join(unknown)} (known: {known})")
    checked = {}
    for key, value in record.items():
        if key == "date" and isinstance(value, (datetime.date, datetime.datetime)):
            value = value.isoformat()  # YAML reads an unquoted 2026-12-02 as a date; JSON holds text
        problem = _field_problem(key, value)
        if problem:
            raise ValueError(f"`{where}.{key}` {problem}")
        checked[key] = value
    return checked


def checked_fitted_on(fitted_on) -> dict:
    """The `fitted_on` record checked (a missing one is empty), or a ValueError naming the field
    that is wrong and why."""
    if fitted_on is None:
        return {}
    checked = _checked(fitted_on, FIELDS, "fitted_on")
    if "held_out" in checked:
        checked["held_out"] = _checked(checked["held_out"], HELD_OUT_FIELDS, "fitted_on.held_out")
    return checked
