"""The page's worker process (inference/serving/judge_worker.py ModelWorker), without the page: a process
that dies between checks is named and replaced, whenever it dies, and no check waits without
limit for a process that loads the models."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from inference.serving import judge_worker
from inference.serving.judge_worker import ModelWorker, WorkerError
from inference.serving.page import parse_args
from tests.conftest import save_tiny_checkpoint
from tests.test_app_main import _resident_mb, glibc_heap


def judge_by_name(models, path: Path, folder: Path):
    """A judge that reads nothing: the file's name and the worker's process id."""
    return {"file": path.name, "pid": os.getpid()}, {}


KEPT = []  # what a judgement leaves alive in the worker


def _allocate_in_holes() -> None:
    """Buffers that glibc keeps in its heap once freed (inference/serving/heap.py): a 24 MB one, freed,
    raises the size mapped apart to 24 MB; then 20 of 8 MB, each followed by a small one that stays
    alive (as an interpreter's objects do), so that none is at the top of the heap when freed."""
    import numpy as np

    np.ones(24 * 2**20, np.uint8)
    buffers = []
    for _ in range(20):
        buffers.append(np.ones(2**23, np.uint8))
        KEPT.append(bytearray(2**16))


def judge_in_holes(models, path: Path, folder: Path):
    """A judge that allocates in a thread of its own, as PyTorch's and the decoders' threads do."""
    thread = threading.Thread(target=_allocate_in_holes)
    thread.start()
    thread.join()
    return {"file": path.name, "pid": os.getpid()}, {}


@pytest.fixture(scope="module")
def args(tmp_path_factory):
    checkpoint = save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")
    return parse_args(["--models", str(checkpoint), "--runtime", "torch", "--device", "cpu"])


@pytest.fixture
def worker(args):
    worker = ModelWorker(args, judge_by_name)
    yield worker
    worker.close()


def _kill(worker: ModelWorker) -> int:
    """SIGKILL the worker's idle process and wait until its end of the pipe is closed (an idle
    process sends nothing: what the pipe reads is its end); the process id."""
    pid = worker.pid
    os.kill(pid, signal.SIGKILL)
    assert worker._connection.poll(30), f"process {pid} still holds its end of the pipe"
    return pid


@pytest.mark.parametrize("judged_before", [False, True])
def test_a_worker_that_dies_after_it_was_seen_ready_is_named_and_replaced(judged_before, worker, monkeypatch, tmp_path):
    """The process dies in the moment between the check that it is alive and the request sent to
    it (an OOM kill): the request meets a closed pipe (a broken pipe on sending to a process that
    has judged nothing yet; a connection reset on reading the answer of one that has)."""
    if judged_before:
        assert worker.judge(tmp_path / "a.jpg", tmp_path, 60)[0] == {"file": "a.jpg", "pid": worker.pid}
    dying = worker.pid
    ensure_ready = ModelWorker._ensure_ready

    def ready_then_killed(self, *args):
        ensure_ready(self, *args)
        _kill(self)

    with monkeypatch.context() as patch:
        patch.setattr(ModelWorker, "_ensure_ready", ready_then_killed)
        with pytest.raises(
            WorkerError, match=r"^the process judging it stopped \(killed by SIGKILL, out of memory\?\)$"
        ):
            worker.judge(tmp_path / "b.jpg", tmp_path, 60)
    assert worker.pid != dying, "another process was started"
    assert worker.judge(tmp_path / "c.jpg", tmp_path, 60)[0] == {"file": "c.jpg", "pid": worker.pid}


def test_a_worker_killed_while_idle_is_replaced_for_the_next_check(worker, tmp_path):
    dying = _kill(worker)
    document, _ = worker.judge(tmp_path / "a.jpg", tmp_path, 60)
    assert document["file"] == "a.jpg" and document["pid"] == worker.pid != dying


def test_a_check_waits_for_a_reloading_worker_no_longer_than_its_time_limit(worker, monkeypatch, tmp_path):
    """A process restarted after a check that overran loads the models again: the next check waits
    for it as long as a check may take (or a minute), not without limit, and the load goes on for
    the one after."""
    monkeypatch.setattr(judge_worker, "MIN_LOAD_WAIT_SECONDS", 0.0, raising=False)
    worker._stop()
    worker._start()  # as after a check that overran its limit: a new process, loading
    loading = worker.pid
    started = time.monotonic()
    with pytest.raises(WorkerError, match=r"^the models are still loading \(0 s so far; .*\): try again in a moment$"):
        worker.judge(tmp_path / "a.jpg", tmp_path, 0.001)
    assert time.monotonic() - started < 1, "it did not wait for the load"
    assert worker.pid == loading, "the load goes on"
    assert worker.judge(tmp_path / "b.jpg", tmp_path, 60)[0] == {"file": "b.jpg", "pid": loading}


def test_a_load_that_takes_too_long_is_stopped_with_a_clear_error(args, monkeypatch):
    monkeypatch.setattr(judge_worker, "LOAD_SECONDS", 0.001, raising=False)
    started = time.monotonic()
    with pytest.raises(WorkerError, match=r"^the models did not load within 0\.001 s$"):
        ModelWorker(args, judge_by_name)
    assert time.monotonic() - started < 10


@glibc_heap
def test_a_worker_gives_back_what_a_judgement_freed(args, tmp_path):
    """The issue's figure (the page itself is tested in test_app_main.py): 24 photos of 25 MP took
    the page from 909 MB to 1.6 GB. Its judging process grew too, measured on 2 CPU cores with
    photos of ~25 MP of different sizes: from 899 MB after the first to 1.2-1.3 GB after 24 before
    the fix; 717-730 MB after each of 12 after it."""
    worker = ModelWorker(args, judge_in_holes)
    try:
        idle = _resident_mb(worker.pid)
        worker.judge(tmp_path / "a.jpg", tmp_path, 60)
        deadline = time.monotonic() + 10  # it gives the memory back once it has answered
        while (grown := _resident_mb(worker.pid) - idle) >= 40 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.close()
    assert grown < 40, f"the judging process kept {grown:.0f} MB of the 160 MB a judgement freed"
