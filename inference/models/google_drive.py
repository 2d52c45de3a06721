"""Google Drive files: the "can't scan this file for viruses" page that Drive answers in place of a
large file, and the address its "Download anyway" button leads to.

Drive answers a file's public download address (drive.google.com/uc?export=download&id=ID) with the
file itself when it is small, and with that page when it is too large to scan: a GET form
(`download-form`, action drive.usercontent.google.com/download) whose hidden fields (id, export,
confirm, uuid) make the confirmed address; older pages held a link (/uc?export=download&confirm=...).
`confirmed_url` reads it from the page (a pure function); `resolve` asks Drive once and returns the
address the download is to use, with the cookies the page set for it (older confirmations were
tied to a `download_warning` cookie). A page with no such button (quota exceeded, sign-in, no such file)
is refused with what it says; the file itself is then downloaded by inference.models.download,
which refuses a page in its place, as every download does."""

from __future__ import annotations

import html.parser
import http.client
import http.cookiejar
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit, urlunsplit

from inference.models.download import DownloadError, NoDowngradeRedirects
from inference.models.download_checks import content_type_problem
from inference.models.download_transport import SpeedLimit, Watchdog, watched_opener

logger = logging.getLogger("inference.models.google_drive")

DRIVE_HOSTS = ("drive.google.com", "drive.usercontent.google.com", "docs.google.com")
PAGE_LIMIT = 2**20  # bytes of a page read at most: Drive's is a few KB


@dataclass
class _Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    is_download_form: bool = False


class _PageReader(html.parser.HTMLParser):
    """The forms (with their hidden fields), links, title and error caption of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.links: list[str] = []
        self.title = ""
        self.caption = ""
        self._in: str | None = None
        self._form: _Form | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._form = _Form(attributes.get("action", ""), attributes.get("method", "get").lower())
            self._form.is_download_form = attributes.get("id") == "download-form"
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and attributes.get("type", "text").lower() == "hidden":
            if attributes.get("name"):
                self._form.fields.append((attributes["name"], attributes.get("value", "")))
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        elif tag == "title":
            self._in = "title"
        elif tag == "p" and "uc-error-subcaption" in attributes.get("class", "").split():
            self._in = "caption"

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        if tag in ("title", "p"):
            self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "caption":
            self.caption += data


def _read(page: str) -> _PageReader:
    reader = _PageReader()
    reader.feed(page)
    reader.close()
    return reader


def _form_url(form: _Form, page_url: str) -> str:
    """Where a browser sends a GET form: its action with the query replaced by its fields."""
    action = urlsplit(urljoin(page_url, form.action or page_url))
    return urlunsplit((action.scheme, action.netloc, action.path, urlencode(form.fields), ""))


def _trusted(candidate: str, page_url: str, file_id: str) -> bool:
    """A confirmed address is taken only for the same file, on Drive (or the page's own host), and
    over HTTPS (or plain HTTP where the page came over plain HTTP: a local mirror)."""
    target, page = urlsplit(candidate), urlsplit(page_url)
    host_ok = target.hostname in DRIVE_HOSTS or target.netloc == page.netloc
    scheme_ok = target.scheme == "https" or target.scheme == page.scheme == "http"
    return host_ok and scheme_ok and parse_qs(target.query).get("id") == [file_id]


def confirmed_url(page: str, page_url: str, file_id: str) -> str | None:
    """The address the "Download anyway" button of Drive's page for `file_id` leads to (the page
    came from `page_url`), or None where the page has none."""
    reader = _read(page)
    forms = sorted(reader.forms, key=lambda f: not f.is_download_form)  # Drive's own form first
    candidates = [_form_url(f, page_url) for f in forms if f.method == "get" and dict(f.fields).get("confirm")]
    candidates += [urljoin(page_url, href) for href in reader.links if "confirm=" in href and "export=download" in href]
    return next((c for c in candidates if _trusted(c, page_url, file_id)), None)


def page_says(page: str) -> str:
    """What a Drive page that offers no download says (its error caption, else its title)."""
    reader = _read(page)
    said = " ".join((reader.caption or reader.title).split())
    return f'it says "{said[:200]}"' if said else "it says nothing recognisable"


def resolve(url: str, file_id: str, destination: Path, timeout: float, speed: SpeedLimit) -> tuple[str, str | None]:
    """The address to download Drive file `file_id` from, and the Cookie header to send there (None
    where Drive set none): `url` itself where Drive answers it with the file, else the confirmed
    address its virus-scan page leads to. Raises DownloadError (one line, saying where to put the
    file fetched by hand) where Drive answers neither."""
    by_hand = (
        f"fetch it by hand from https://drive.google.com/file/d/{file_id}/view and put it at {destination}, "
        "then run verify"
    )
    jar = http.cookiejar.CookieJar()
    with Watchdog(speed) as watchdog:
        try:
            response = watched_opener(watchdog, NoDowngradeRedirects, urllib.request.HTTPCookieProcessor(jar)).open(
                urllib.request.Request(url), timeout=timeout
            )
        except urllib.error.HTTPError as error:
            error.close()
            raise DownloadError(f"{url}: Google Drive answered HTTP {error.code} ({error.reason}); {by_hand}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = speed.describe() if watchdog.fired else getattr(error, "reason", error)
            raise DownloadError(f"{url}: cannot reach Google Drive ({reason}); {by_hand}") from None
        with response:
            if content_type_problem(response.headers.get("Content-Type")) is None:
                return url, None  # the file itself: small enough for Drive to scan
            try:
                page = response.read(PAGE_LIMIT).decode("utf-8", "replace")
            except (http.client.HTTPException, OSError) as error:
                raise DownloadError(f"{url}: Google Drive's page was cut ({error}); run fetch again") from None
            page_url = response.geturl()
    confirmed = confirmed_url(page, page_url, file_id)
    if confirmed is None:
        raise DownloadError(
            f"{url}: Google Drive answered a page with no download button ({page_says(page)}): the file may be "
            f"over its download quota for today, or no longer shared; {by_hand}"
        )
    logger.info("%s: Google Drive asks to confirm the download of a file it cannot scan; following its button", url)
    request = urllib.request.Request(confirmed)
    jar.add_cookie_header(request)
    return confirmed, request.get_header("Cookie")
