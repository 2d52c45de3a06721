"""Google Drive as `python -m inference.weights fetch` meets it, against a real local server that plays
Drive: a large file's address answered with the "can't scan this file for viruses" page, whose
"Download anyway" form leads to the file; a page without one (quota exceeded); a button that leads
elsewhere; a confirmed address answered with another page; a small file answered directly; a
transfer cut on every attempt and resumed at the next fetch through a new confirmation (Drive's
uuid changes per page). And the page reading itself, on the page shapes Drive has used."""

from __future__ import annotations

import json

import pytest

from inference.models import named_weights as weights
from inference.models.google_drive import confirmed_url, page_says
from inference.models.weights_registry import GoogleDrive, Licence, NamedEnsemble, WeightFile
from tests.http_server import PAYLOAD, digest

pytest_plugins = ("tests.http_server",)  # its `server` fixture

FILE_ID = "12sLyqBp0VFwdpA-oZLdIOkOTkz_ZnIhV"
RESEARCH_ONLY = Licence("Research only", "https://example.org/licence", "non-commercial research only", "Lab", True)


def scan_page(action: str, file_id: str = FILE_ID, uuid: str = "0b1c-uuid-1") -> bytes:
    """Drive's virus-scan warning as it is served since 2024: a GET form to drive.usercontent."""
    return (
        "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
        "<p class='uc-warning-caption'>Google Drive can't scan this file for viruses.</p>"
        f'<form id="download-form" action="{action}" method="get">'
        '<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download anyway"/>'
        f'<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">'
        f'<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}">'
        "</form></body></html>"
    ).encode()


def confirm_path(uuid: str = "0b1c-uuid-1") -> str:
    return f"/download?id={FILE_ID}&export=download&confirm=t&uuid={uuid}"


# --- reading the page ----------------------------------------------------------------------------


def test_the_download_form_gives_its_action_with_its_fields_as_a_browser_sends_them():
    page = scan_page("https://drive.usercontent.google.com/download?ignored=1").decode()
    url = confirmed_url(page, f"https://drive.google.com/uc?export=download&id={FILE_ID}", FILE_ID)
    assert url == f"https://drive.usercontent.google.com{confirm_path()}", "a GET form's fields replace its query"


def test_the_older_confirm_link_is_followed_relative_to_the_page():
    page = (
        "<html><body><a id='uc-download-link' href='/uc?export=download&amp;confirm=AbC_9&amp;id="
        f"{FILE_ID}'>Download anyway</a></body></html>"
    )
    url = confirmed_url(page, f"https://drive.google.com/uc?export=download&id={FILE_ID}", FILE_ID)
    assert url == f"https://drive.google.com/uc?export=download&confirm=AbC_9&id={FILE_ID}"


@pytest.mark.parametrize(
    "action, page_url, why",
    [
        ("https://drive.usercontent.google.com/download", "https://drive.google.com/uc", "another file's id"),
        ("https://evil.example/download", "https://drive.google.com/uc", "a host that is not Drive"),
        ("http://drive.usercontent.google.com/download", "https://drive.google.com/uc", "HTTPS to plain HTTP"),
    ],
)
def test_a_button_that_leads_elsewhere_is_not_followed(action, page_url, why):
    file_id = "another-file" if why == "another file's id" else FILE_ID
    assert confirmed_url(scan_page(action, file_id).decode(), page_url, FILE_ID) is None, why


def test_a_page_without_a_button_says_what_it_says():
    quota = (
        "<html><head><title>Google Drive - Quota exceeded</title></head><body><p class='uc-error-caption'>Sorry, "
        "you can't view or download this file at this time.</p><p class='uc-error-subcaption'>Too many users have "
        "viewed or downloaded this file recently.</p></body></html>"
    )
    assert confirmed_url(quota, "https://drive.google.com/uc", FILE_ID) is None
    assert page_says(quota) == 'it says "Too many users have viewed or downloaded this file recently."'
    assert page_says("<html><title> Sign-in </title></html>") == 'it says "Sign-in"'
    assert page_says("<html></html>") == "it says nothing recognisable"


# --- fetch against a server that plays Drive -------------------------------------------------------


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPFAKE_DETECTOR_WEIGHTS", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def drive(server, monkeypatch, cache):
    """Set "drive" of one file, sbi/FF.tar, shared on the local "Drive" under FILE_ID: its address
    answers the virus-scan page, whose form leads to the file."""
    start = f"/uc?export=download&id={FILE_ID}"
    server.files[start] = scan_page(f"{server.url}/download")
    server.content_types[start] = "text/html; charset=utf-8"
    server.files[confirm_path()] = PAYLOAD
    file = WeightFile("sbi/FF.tar", server.url + start, "tf_efficientnet_b4", 380, origin=GoogleDrive(FILE_ID))
    monkeypatch.setitem(
        weights.ENSEMBLES, "drive", NamedEnsemble("drive", "test", (file,), detector="sbi", licence=RESEARCH_ONLY)
    )
    return start


def test_fetch_follows_the_virus_scan_page_to_the_file_and_records_the_terms(drive, server, cache, capsys):
    server.headers[drive] = {"Set-Cookie": f"download_warning_13_{FILE_ID}=tok3n; Path=/"}
    assert weights.main(["fetch", "drive", "--accept-terms"]) == 0
    assert (cache / "sbi" / "FF.tar").read_bytes() == PAYLOAD
    assert server.requests == [("GET", drive), ("GET", confirm_path())]
    assert server.cookies == [None, f"download_warning_13_{FILE_ID}=tok3n"], "the page's cookie goes with the button"
    entry = json.loads((cache / "weights.json").read_text())["sbi/FF.tar"]
    assert entry["sha256"] == digest(PAYLOAD) and entry["terms"].startswith(
        "Research only: accepted with --accept-terms"
    )
    out = capsys.readouterr().out
    assert out.index("drive: weights by Lab, under Research only") < out.index("drive: 1 files in")


def test_a_page_with_no_button_is_refused_with_what_it_says_and_nothing_is_saved(drive, server, cache, capsys):
    server.files[drive] = b"<html><title>Google Drive - Quota exceeded</title></html>"
    assert weights.main(["fetch", "drive", "--accept-terms"]) == 2
    error = capsys.readouterr().err
    assert (
        f'{server.url}{drive}: Google Drive answered a page with no download button (it says "Google Drive - ' in error
    )
    assert f"fetch it by hand from https://drive.google.com/file/d/{FILE_ID}/view and put it at" in error
    assert not (cache / "sbi").exists() or list((cache / "sbi").iterdir()) == []


def test_a_confirmed_address_that_answers_another_page_is_refused_as_weights(drive, server, cache, capsys):
    server.files[confirm_path()] = b"<html><title>Sign in - Google Accounts</title></html>"
    server.content_types[confirm_path()] = "text/html"
    assert weights.main(["fetch", "drive", "--accept-terms"]) == 2
    assert "the server answered with a text/html page, not the file" in capsys.readouterr().err
    assert not (cache / "sbi" / "FF.tar").exists() and not (cache / "sbi" / "FF.tar.part").exists()


def test_a_small_file_that_drive_serves_directly_is_fetched_from_its_address(drive, server, cache):
    server.files[drive] = PAYLOAD
    server.content_types.pop(drive)
    assert weights.main(["fetch", "drive", "--accept-terms"]) == 0
    assert (cache / "sbi" / "FF.tar").read_bytes() == PAYLOAD
    assert server.requests == [("GET", drive), ("GET", drive)], "asked once to see it is the file, then fetched"


def test_a_transfer_cut_on_every_attempt_resumes_at_the_next_fetch_through_a_new_confirmation(
    drive, server, cache, capsys
):
    server.plan[confirm_path()] = [("close", 100_000), ("close", 0), ("close", 0)]
    assert weights.main(["fetch", "drive", "--accept-terms"]) == 2
    assert "the connection was cut after 100000 of 300000 bytes" in capsys.readouterr().err
    assert (cache / "sbi" / "FF.tar.part").stat().st_size == 100_000
    # The next page carries another uuid, so another confirmed address: the .part is recorded
    # against the file's own address, so it is resumed, not started again.
    server.files[drive] = scan_page(f"{server.url}/download", uuid="0b1c-uuid-2")
    server.files[confirm_path("0b1c-uuid-2")] = PAYLOAD
    assert weights.main(["fetch", "drive", "--accept-terms"]) == 0
    assert (cache / "sbi" / "FF.tar").read_bytes() == PAYLOAD
    assert server.requests[-1] == ("GET", confirm_path("0b1c-uuid-2")) and server.ranges[-1] == "bytes=100000-"
