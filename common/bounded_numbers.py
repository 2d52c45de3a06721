"""Numbers read from files users give (checkpoints' settings, ensemble files, calibration blocks):
is this a finite number within its bounds, and how to show a value that is not.

YAML reads a 400-digit integer as a Python int, and a checkpoint may hold one: `math.isfinite` and
`float` raise OverflowError on it (a traceback where a one-line error was due), and `repr` of one
of more than 4300 digits raises ValueError. YAML 1.1, which PyYAML reads, needs a dot and a signed
exponent in a float: `1e-3` and `1.0e308` are text, not numbers, and an error showing '1e-3'
should say so and how to write it.
"""

from __future__ import annotations

import math
import numbers
import reprlib

_BITS_PER_DIGIT = math.log2(10)


def finite_number(value) -> float | None:
    """`value` as a float where it is a real number (not a bool) that is finite as a float, else
    None: an integer beyond the float range (10**400) is None, not an OverflowError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def number_within(
    value, low: float = -math.inf, high: float = math.inf, low_open: bool = False, high_open: bool = False
) -> float | None:
    """`value` as a float where it is a finite number from `low` to `high` (either end left out
    where `low_open`, `high_open`), else None."""
    number = finite_number(value)
    if number is None:
        return None
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    return number if above and below else None


def yaml_number_text(value) -> str | None:
    """How to write `value` as a YAML number, where it is text that reads as one (`1e-3`, `1.0e308`:
    YAML 1.1 reads both as text), else None."""
    if not isinstance(value, str):
        return None
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    text = repr(number)
    return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text


def shown(value, limit: int = 80) -> str:
    """`value` as an error shows it: a short repr (an integer too long to write as its digit count),
    and for text YAML read where a number was meant, how to write it as a number."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {round(value.bit_length() / _BITS_PER_DIGIT)} digits"
    try:
        text = reprlib.repr(value)[:limit]
    except ValueError:  # a list holding an integer too long to write
        return f"a {type(value).__name__} holding an integer too long to show"
    hint = yaml_number_text(value)
    if hint is None:
        return text
    if "e" in value.lower():
        return f"{text} (read as text: YAML reads an exponent only after a dot, with its sign: write {hint})"
    return f"{text} (text, not a number: write it without quotes)"
