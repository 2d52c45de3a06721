"""The suite's leak check (tests/conftest.py): a test that leaves an event loop, socket, thread or
process behind fails itself, and the tests after it, however strict their warning filters, pass."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

LEAKY = """
import asyncio, gc, socket, subprocess, sys, threading, time


class Cycle:
    def __init__(self, resource):
        self.me, self.resource = self, resource   # freed only by the garbage collector


def test_leaks_an_event_loop():
    Cycle(asyncio.new_event_loop())


def test_leaks_a_socket():
    Cycle(socket.socket(socket.AF_UNIX))


def test_closes_what_it_opens():
    loop = asyncio.new_event_loop()
    loop.close()
    with socket.socket(socket.AF_UNIX):
        pass


def test_starts_a_thread_it_never_stops():
    threading.Thread(target=time.sleep, args=(30,), name="forgotten", daemon=True).start()


def test_starts_a_process_it_never_waits_for():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
"""

# A module fixture's leak is found when the fixture is finalised, at the module's last test: with
# the module's objects left unfrozen, and with them frozen after a test that kept more than
# FREEZE_ABOVE_OBJECTS (tests/conftest.py), which the big module does.
FIXTURE_LEAK = """
import socket
import pytest


class Cycle:
    def __init__(self, resource):
        self.me, self.resource = self, resource


@pytest.fixture(scope="module")
def kept():
    held = [Cycle(socket.socket(socket.AF_UNIX)), [[n] for n in range(SIZE)]]
    yield held
    held.clear()


def test_uses_the_fixture(kept):
    assert kept


def test_uses_it_again(kept):
    assert kept
"""

STRICT = """
import gc
import pytest

pytestmark = pytest.mark.filterwarnings("error")


def test_a_bystander_with_every_warning_an_error():
    gc.collect()
"""


def test_each_leak_fails_the_test_that_made_it_and_no_bystander(tmp_path):
    tests = tmp_path / "repo" / "tests"
    tests.mkdir(parents=True)
    (tests / "conftest.py").write_text((REPO_ROOT / "tests" / "conftest.py").read_text())
    (tests / "test_a_leaky.py").write_text(LEAKY)
    (tests / "test_a_small_fixture.py").write_text(FIXTURE_LEAK.replace("SIZE", "10"))
    (tests / "test_a_big_fixture.py").write_text(FIXTURE_LEAK.replace("SIZE", "60_000"))
    (tests / "test_b_strict.py").write_text(STRICT)
    (tests.parent / "pytest.ini").write_text("[pytest]\nmarkers =\n    shared_data: sample data\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rE", "tests"]
    environment = {key: value for key, value in os.environ.items() if key != "DEEPFAKE_TEST_LEAKS_REPORT"}
    environment["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # no installed plugin is needed (hypothesis's took 1 s)
    result = subprocess.run(command, cwd=tests.parent, env=environment, capture_output=True, text=True, timeout=180)
    output = result.stdout
    errors = {line.split(" - ")[0].removeprefix("ERROR ") for line in output.splitlines() if line.startswith("ERROR ")}
    leaky = "tests/test_a_leaky.py::"
    assert errors == {
        f"{leaky}test_leaks_an_event_loop",
        f"{leaky}test_leaks_a_socket",
        f"{leaky}test_starts_a_process_it_never_waits_for",  # the module's last test: threads and processes
        "tests/test_a_small_fixture.py::test_uses_it_again",
        "tests/test_a_big_fixture.py::test_uses_it_again",
    }, output
    assert "unclosed event loop" in output and "unclosed <socket.socket" in output
    assert "thread 'forgotten' started by test_a_leaky still running" in output
    assert "child process" in output and "time.sleep(30)" in output
    assert "10 passed, 5 errors" in output, output
