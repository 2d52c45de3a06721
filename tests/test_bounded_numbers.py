"""The shared check of "a finite number within bounds" for numbers read from users' files: an
integer no float holds (10**400) is refused, never an OverflowError, and an error shows it, and
text YAML read where a number was meant, in a line that says what to write."""

from __future__ import annotations

import math

import yaml

from common.bounded_numbers import finite_number, number_within, shown


def test_numbers_no_float_holds_are_not_finite_numbers():
    for value in (10**400, -(10**400), math.nan, math.inf, True, "1.0", None, [1.0]):
        assert finite_number(value) is None, value
    assert finite_number(10**300) == 1e300 and finite_number(3) == 3.0
    assert number_within(10**400, 0) is None and number_within(5e-324, 0) == 5e-324
    assert number_within(0, 0, 1, low_open=True) is None and number_within(1, 0, 1, high_open=True) is None
    assert number_within(0.5, 0, 1, low_open=True, high_open=True) == 0.5


def test_an_error_shows_long_integers_and_says_how_to_write_yaml_numbers_read_as_text():
    assert shown(10**5000) == "an integer of about 5000 digits", "repr() refuses more than 4300 digits"
    assert shown([10**5000]) == "a list holding an integer too long to show"
    for text in ("1e-3", "1e308", "5e-324", "1.0e308"):
        written = shown(text).split("write ")[1].rstrip(")")
        assert yaml.safe_load(f"x: {written}")["x"] == float(text), (text, written)
    assert shown("12") == "'12' (text, not a number: write it without quotes)"
    assert shown("heavy") == "'heavy'" and shown(math.nan) == "nan"
