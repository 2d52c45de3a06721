"""The page's command itself, `python -m inference.app` (main), as a person starts it: a
fractional --max-mb, no --port (Gradio finds a free one, even when the first it would try is
taken), what a page killed mid-check left removed, an upload over the limit refused, a photo
judged, Ctrl-C ending it cleanly and leaving nothing; its memory over several checks."""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from inference.serving.page_folders import pid_namespace
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import REPO_ROOT, save_tiny_checkpoint
from tests.test_page_folders import killed_page_leftovers

ADDRESS = re.compile(r"the page is on (http://127\.0\.0\.1:(\d+)/)")


def _wait_for_address(process: subprocess.Popen, log: Path, seconds: float = 180) -> tuple[str, int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = ADDRESS.search(log.read_text(errors="replace"))
        if found:
            return found.group(1), int(found.group(2))
        if process.poll() is not None:
            pytest.fail(f"the page exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"the page said no address within {seconds:g} s:\n{log.read_text()[-3000:]}")


CHECK_SECONDS = 180  # one check of a 9 MP photo on 2 shared CPU cores takes seconds
GROWTH_MB = 32  # measured: +2 MB fixed, +80 MB with glibc's threshold left and no malloc_trim


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The page's command started once, as a person starts it, for the tests below in their order
    (the memory test first, on a page that has judged nothing; the last stops it): --max-mb 4.5, no
    --port while the port Gradio tries first is taken (as by another program between a probe and a
    launch), in a temporary folder where a page killed mid-check left its folders. That folder has a
    short path: the judging processes start from a forkserver whose socket is made there, and a
    socket path over 107 bytes cannot be bound ("AF_UNIX path too long"), which a folder under a
    pytest-xdist worker's can reach."""
    folder = tmp_path_factory.mktemp("page")
    checkpoint, log = save_tiny_checkpoint(folder / "tiny.pt"), folder / "page.log"
    with tempfile.TemporaryDirectory(prefix="page-", ignore_cleanup_errors=True) as scratch:
        scratch = Path(scratch)
        left = killed_page_leftovers(scratch)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            first_try = taken.getsockname()[1]
            environment = {
                **{name: value for name, value in os.environ.items() if name != "GRADIO_TEMP_DIR"},
                "GRADIO_SERVER_PORT": str(first_try),
                "GRADIO_ANALYTICS_ENABLED": "False",
                "TMPDIR": str(scratch),
                "HF_HUB_OFFLINE": "1",
            }
            command = [sys.executable, "-m", "inference.app", "--models", str(checkpoint), "--runtime", "torch"]
            with open(log, "wb") as output:
                process = subprocess.Popen(  # started as a shell starts a background job: SIGINT ignored
                    [*command, "--max-mb", "4.5"],
                    cwd=REPO_ROOT,
                    env=environment,
                    stdout=output,
                    stderr=output,
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                )
            try:
                url, port = _wait_for_address(process, log)
            except BaseException:
                process.kill()
                process.wait()
                raise
        try:
            yield SimpleNamespace(
                process=process, url=url, port=port, first_try=first_try, left=left, scratch=scratch, log=log
            )
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def glibc_heap(test):
    """For a test of what glibc's allocator keeps (inference/serving/heap.py): skipped elsewhere, and where
    another allocator is preloaded (jemalloc, tcmalloc), or no /proc to read memory from."""
    preloaded = os.environ.get("LD_PRELOAD", "").lower()
    reason = None
    if platform.libc_ver()[0] != "glibc":
        reason = "tests glibc's allocator"
    elif "jemalloc" in preloaded or "tcmalloc" in preloaded:
        reason = "another allocator is preloaded"
    elif not Path("/proc/self/status").exists():
        reason = "reads resident memory from /proc (Linux)"
    return pytest.mark.skipif(reason is not None, reason=reason or "")(test)


def _resident_mb(pid: int) -> float:
    """A process's resident memory (VmRSS), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


@glibc_heap
@pytest.mark.slow
def test_the_page_gives_back_the_memory_of_each_check(page, tmp_path):
    """The issue's figure: 24 photos of 25 MP took the page from 909 MB to 1.6 GB, still climbing: glibc
    kept each check's freed buffers in its heaps (inference/serving/heap.py). Here a 9 MP photo
    judged 3 times, the page's resident memory read after each; the first check of it is the
    baseline (it loads what the page then keeps and grows the buffers to its size, ~30 MB, which
    counted as growth against the idle page before). It runs first on the page: after the
    upload-limit test's checks (a photo judged, a 5 MB upload refused), the page without the fix
    grew by -16 to +21 MB in 5 of 6 runs (this test passed), +74 in the other; first, by +66 to +153
    MB in 5 of 7 runs, less than 32 MB in 2 (glibc's heaps do not grow the same way every time).
    Measured on 2 shared CPU cores after the first check, the next 4: 955 MB, then 957 MB (+2 MB);
    with inference/serving/heap.py's calls taken out, 991 MB, then 1059-1071 MB (+80 MB): each check
    after the first, the second included, was 68 MB or more over the first, so that two of them (not
    four) tell the growth. Before: 925 MB idle, then 1038-1040 MB unfixed (+113 MB), 954-956 MB
    fixed (+30 MB)."""
    from gradio_client import Client, handle_file

    assert page.process.poll() is None, "the page has stopped: the Ctrl-C test runs last"
    rng = np.random.default_rng(0)
    face = np.asarray(Image.fromarray(builtin_photos()["astronaut"]).resize((3000, 3000), Image.BILINEAR))
    photo = tmp_path / "nine_mp.jpg"
    Image.fromarray(np.clip(face + rng.normal(0, 12, face.shape), 0, 255).astype(np.uint8)).save(photo, quality=92)
    assert photo.stat().st_size < 4.5 * 2**20, "under the page's upload limit"
    client = Client(page.url, verbose=False)
    after = []
    for _ in range(3):
        job = client.submit(handle_file(str(photo)), api_name="/check")
        assert job.result(timeout=CHECK_SECONDS)[-1]["error"] is None  # a stuck check fails, not hangs
        after.append(_resident_mb(page.process.pid))
    client.close()
    del client, job  # and their threads
    grown = max(after[1:]) - after[0]
    assert grown < GROWTH_MB, f"the page grew by {grown:.0f} MB after its first check: {[round(mb) for mb in after]} MB"


@pytest.mark.slow
def test_the_command_starts_with_a_fractional_upload_limit_on_a_port_gradio_finds(page, tmp_path):
    from gradio_client import Client, handle_file

    assert page.process.poll() is None, "the page has stopped: the Ctrl-C test runs last"
    photo = tmp_path / "photo.jpg"
    Image.fromarray(builtin_photos()["astronaut"]).save(photo)
    noise = np.random.default_rng(0).integers(0, 256, (1300, 1300, 3), np.uint8)
    large = tmp_path / "large.png"
    Image.fromarray(noise).save(large)  # noise does not compress: ~5 MB
    assert photo.stat().st_size < 4.5 * 2**20 < large.stat().st_size
    assert page.port != page.first_try
    for path in page.left:
        assert not path.exists() and f"removed {path} (" in page.log.read_text()
    namespace = "" if pid_namespace() is None else f".{pid_namespace()}"
    cache = list(page.scratch.glob(f"deepfake-page-{page.process.pid}{namespace}@{socket.gethostname()}-*"))
    assert len(cache) == 1, "Gradio's cache is a folder of the page's own"
    client = Client(page.url, verbose=False)
    assert client.config["max_file_size"] == 4.5 * 2**20  # 4.5 MB, in the bytes Gradio wants
    with pytest.raises(ValueError, match=r"large.png exceeds the maximum file size of 4718592 bytes"):
        client.predict(handle_file(str(large)), api_name="/check")
    import httpx

    refused = httpx.post(f"{page.url}gradio_api/upload", files={"files": ("large.png", large.read_bytes())})
    assert refused.status_code == 413 and "maximum allowed size" in refused.text
    verdict, _, frame, faces, document = client.predict(handle_file(str(photo)), api_name="/check")
    client.close()
    assert document["file"] == "photo.jpg" and document["error"] is None and len(faces) == 1
    assert [path.name for path in cache[0].rglob("photo.jpg")] == ["photo.jpg"], "the upload is kept there"
    assert verdict.startswith(f"## {document['verdict']}: P(fake) = {document['probability']:.3f}")


@pytest.mark.slow
def test_ctrl_c_ends_the_page_cleanly_and_leaves_nothing(page):
    page.process.send_signal(signal.SIGINT)
    try:
        code = page.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the page did not stop within 60 s of SIGINT; its log ends:\n" + page.log.read_text()[-3000:])
    assert code == 0, page.log.read_text()[-3000:]
    assert not list(page.scratch.glob("deepfake-check-*")), "the private copy and its explanation are deleted"
    assert not list(page.scratch.glob("deepfake-page-*")), "and Gradio's cache"
    assert "Traceback" not in page.log.read_text()


def test_a_checkpoint_the_judging_process_cannot_load_ends_the_command_in_one_line(tmp_path, capsys, monkeypatch):
    from inference.serving import page as app

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the page's temporary folders
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert app.main(["--models", str(broken), "--runtime", "torch"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "broken.pt" in lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert not list(tmp_path.glob("deepfake-*")), "the page's folders are removed"


def test_a_server_that_will_not_close_is_left_after_its_time_and_said_so(caplog):
    import threading

    from inference.serving.page import close_within

    released = threading.Event()

    class Stuck:
        closed = False

        def close(self):
            released.wait(30)
            self.closed = True

    class Quick(Stuck):
        def close(self):
            self.closed = True

    stuck, quick = Stuck(), Quick()
    with caplog.at_level("WARNING"):
        assert close_within(stuck, 0.2) is False
    assert "did not close within 0.2 s" in caplog.text and not stuck.closed
    released.set()
    assert close_within(quick, 5) is True and quick.closed
