"""The web page: judged through its API with gradio_client (a clip and a photo, the limits, the
upload deleted), and through headless Chromium as a person uses it (skipped without Chromium)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

from inference import detect
from inference.app import Judge, build_app, parse_args
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint

CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def media(demo_world, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    video = sorted((demo_world / "test_videos").glob("*.mp4"))[0]
    shutil.copy(video, folder / "clip.mp4")
    Image.fromarray(builtin_photos()["astronaut"]).save(folder / "photo.jpg")
    checkpoint = save_tiny_checkpoint(folder / "tiny.pt")
    return {"clip": folder / "clip.mp4", "photo": folder / "photo.jpg", "model": checkpoint}


@pytest.fixture(scope="module")
def server(media, tmp_path_factory):
    """The app on a free port of 127.0.0.1, uploads kept in a folder of this test's own."""
    uploads = tmp_path_factory.mktemp("gradio_uploads")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(uploads))
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        args = parse_args(["--models", str(media["model"]), "--runtime", "torch", "--max-seconds", "600"])
        app = build_app(Judge(args))
        port = _free_port()
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
        yield {"url": f"http://127.0.0.1:{port}/", "uploads": uploads, "args": args}
        app.close()


def _send(server, path: Path):
    """The app's five outputs for `path` (uploaded: the app deletes its own copy)."""
    from gradio_client import Client, handle_file

    return Client(server["url"], verbose=False).predict(handle_file(str(path)), api_name="/check")


def test_a_clip_and_a_photo_get_their_verdicts_as_detect_gives_them(server, media, capsys):
    expected = {}
    for name in ("clip", "photo"):
        assert detect.main([str(media[name]), "--models", str(media["model"]), "--runtime", "torch", "--json"]) == 0
        expected[name] = json.loads(capsys.readouterr().out)
    for name, kind in (("clip", "video"), ("photo", "photo")):
        verdict, plot, frame, faces, document = _send(server, media[name])
        assert document["kind"] == kind and document["file"] == media[name].name and document["error"] is None
        assert document["probability"] == pytest.approx(expected[name]["probability"], abs=1e-4)
        assert document["verdict"] == expected[name]["verdict"]
        assert verdict.startswith(f"## {document['verdict']}: P(fake) = {document['probability']:.3f}")
        assert len(faces) == len(document["explained_faces"]) == min(6, document["faces"]) >= 1
        assert frame is not None and (plot is not None) == (kind == "video")
    leftovers = [p.name for p in server["uploads"].rglob("*") if p.name in {"clip.mp4", "photo.jpg"}]
    assert leftovers == [], "uploads are deleted once judged"


def test_a_video_over_the_limit_is_refused_with_a_message(server, media, tmp_path):
    from gradio_client.exceptions import AppError

    limits = (
        ("max_seconds", 1.0, "clip", r"clip.mp4: \d+ s long, more than the 1 s this page accepts"),
        ("max_mb", 0.001, "photo", r"photo.jpg: 0.0\d+ MB, more than the 0.001 MB this page accepts"),
    )
    for setting, limit, name, message in limits:
        usual = getattr(server["args"], setting)
        setattr(server["args"], setting, limit)
        try:
            with pytest.raises(AppError, match=message):
                _send(server, media[name])
        finally:
            setattr(server["args"], setting, usual)
    (tmp_path / "notes.txt").write_text("no video here")
    with pytest.raises(AppError, match="Invalid file type"):  # Gradio's own check of the upload
        _send(server, tmp_path / "notes.txt")


def test_a_person_uploads_a_photo_in_a_browser_and_reads_the_verdict(server, media):
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is absent (Debian's chromium package installs /usr/bin/chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=str(CHROMIUM), args=[*flags, "--disable-sync", "--no-first-run"]
        )
        try:
            page = browser.new_page()
            page.goto(server["url"])
            page.locator("input[type=file]").set_input_files(str(media["photo"]))
            page.get_by_text("photo.jpg").first.wait_for(timeout=30_000)
            page.locator("#check").click()
            verdict = page.locator("#verdict")
            verdict.get_by_text("P(fake)").wait_for(timeout=120_000)
            text = verdict.inner_text()
        finally:
            browser.close()
    assert text.split(":")[0].strip() in {"FAKE", "REAL"}
    assert "photo.jpg: 1 face of 1 person in 1 of 1 sampled frames" in text
