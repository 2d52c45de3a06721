"""The downloader's decisions as pure functions (inference/models/download_checks.py): pages told from
files by Content-Type and first bytes, size bounds, free space, a changed file told by its
validators, and curl's speed limit over a sliding window."""

from __future__ import annotations

import pytest

from inference.models.download_checks import (
    SpeedWindow,
    Validator,
    change_between,
    checkpoint_start_problem,
    content_type_problem,
    size_problem,
    space_problem,
    unconfirmed_resume,
    validator_from,
    validator_read,
)


@pytest.mark.parametrize(
    ("content_type", "page"),
    [
        ("text/html; charset=utf-8", True),
        ("TEXT/HTML", True),
        ("text/plain", True),
        ("application/json", True),
        ("application/xhtml+xml", True),
        ("application/problem+json", True),
        ("application/octet-stream", False),
        ("application/zip", False),
        (None, False),
        ("", False),
    ],
)
def test_a_page_is_told_by_its_content_type(content_type, page):
    assert (content_type_problem(content_type) is not None) is page


@pytest.mark.parametrize(
    ("first", "checkpoint"),
    [
        (b"PK\x03\x04\x00\x00\x08\x08", True),  # torch.save since 1.6
        (b"\x80\x02\x8a\x0alz\xfc\x9c", True),  # torch.save before 1.6: a protocol-2 pickle
        (b"<!DOCTYPE html>", False),
        (b"<html><head>", False),
        (b"\x80\x09junk", False),
        (b"", False),
    ],
)
def test_a_checkpoint_is_told_by_its_first_bytes(first, checkpoint):
    assert (checkpoint_start_problem(first) is None) is checkpoint


def test_sizes_outside_the_registrys_bounds_are_named():
    assert size_problem(960, 100_000, None) == "960 bytes, fewer than the registry's minimum of 100000"
    assert size_problem(10**15, None, 10**9) == f"{10**15} bytes, more than the registry's maximum of {10**9}"
    assert size_problem(500, 500, 500) is None and size_problem(7, None, None) is None


def test_free_space_is_judged_against_the_bytes_still_to_write():
    """The issue: a stated 10^15 bytes was written until the disk was full."""
    assert space_problem(10**15, 50 * 10**9) == f"{10**15} more bytes are needed and only {50 * 10**9} are free"
    assert space_problem(1000, 1000) is None and space_problem(0, 0) is None
    assert space_problem(1001, 1000) is not None


def test_if_range_takes_a_strong_etag_else_the_date():
    date = "Sun, 13 Sep 2020 12:26:40 GMT"
    assert validator_from("u", 5, {"ETag": '"abc"', "Last-Modified": date}).if_range() == '"abc"'
    assert validator_from("u", 5, {"ETag": 'W/"abc"', "Last-Modified": date}).if_range() == date
    assert validator_from("u", 5, {}).if_range() is None


def test_a_changed_etag_date_or_size_is_a_changed_file():
    before = Validator("u", 100, '"a"', "Sun, 13 Sep 2020 12:26:40 GMT")
    assert change_between(before, before) is None
    assert change_between(before, Validator("u", 100, None, None)) is None, "nothing said, nothing known"
    assert change_between(before, Validator("u", 100, '"b"', None)) == 'its ETag was "a" and is now "b"'
    assert "Last-Modified" in change_between(before, Validator("u", 100, None, "Mon, 14 Sep 2020 00:00:00 GMT"))
    assert change_between(before, Validator("u", 101, '"a"', None)) == "its size was 100 and is now 101"


def test_a_resumes_206_must_repeat_the_validator_its_if_range_sent():
    """The review's splice: the record's ETag "a", a 206 with no validator at all (a server that
    ignores If-Range): change_between sees nothing changed, unconfirmed_resume refuses it."""
    date = "Sun, 13 Sep 2020 12:26:40 GMT"
    with_etag, with_date = Validator("u", 100, '"a"', date), Validator("u", 100, None, date)
    bare = Validator("u", 100, None, None)
    assert change_between(with_etag, bare) is None
    assert unconfirmed_resume(with_etag, bare) == (
        'the first answer stated the ETag "a" and the answer to the resume states no strong one'
    )
    assert unconfirmed_resume(with_etag, Validator("u", 100, None, date)) is not None, "the date alone is weaker"
    assert unconfirmed_resume(with_etag, Validator("u", 100, '"a"', None)) is None, "the ETag sent is repeated"
    assert unconfirmed_resume(with_date, bare) == (
        f"the first answer stated Last-Modified {date} and the answer to the resume states none"
    )
    assert unconfirmed_resume(with_date, with_date) is None
    assert unconfirmed_resume(bare, bare) is None, "no If-Range was sent (a SHA-256 is expected instead)"


def test_a_validator_record_round_trips_and_junk_reads_as_none():
    validator = Validator("http://h/m", 7, '"e"', None)
    assert validator_read(validator.to_json()) == validator
    for junk in (None, [], {"url": 3}, {"url": "u", "size": "7"}, {"url": "u", "etag": 5}):
        assert validator_read(junk) is None


def test_the_speed_window_slides_and_cuts_only_a_whole_slow_period():
    window = SpeedWindow(limit=100, period=1.0, now=0.0)
    assert not window.too_slow(0.5, 0), "not before a whole period has passed"
    assert window.too_slow(1.0, 99), "99 bytes in the first second"
    window = SpeedWindow(limit=100, period=1.0, now=0.0)
    received = 0
    for tick in range(1, 40):  # 500 bytes/s for 2 s, then 20 bytes/s
        received += 50 if tick <= 20 else 2
        if window.too_slow(tick / 10, received):
            break
    # The second up to 2.8 s held 116 bytes (two fast ticks and eight slow ones), the one to 2.9 s 68.
    assert tick == 29, "cut once a whole second held fewer than 100 bytes, not before"
    assert not SpeedWindow(limit=0, period=1.0, now=0.0).too_slow(5.0, 0), "a limit of 0 cuts nothing"
