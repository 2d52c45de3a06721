"""inference/serving/heap.py where the C library cannot be reached: nothing done, nothing raised, and the
page's judging process goes on answering."""

from __future__ import annotations

import ctypes
import multiprocessing
import os

import pytest

from inference.serving.heap import give_back_freed_memory, give_back_large_buffers
from inference.serving.judge_worker import serve_judgements
from inference.serving.page import parse_args
from tests.conftest import save_tiny_checkpoint


def _no_c_library(name, *args, **kwargs):
    raise TypeError("LoadLibrary() argument 1 must be str, not None")  # what Windows says to CDLL(None)


@pytest.fixture
def windows_ctypes(monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", _no_c_library)


def test_no_c_library_to_reach_does_nothing_and_raises_nothing(windows_ctypes):
    assert give_back_large_buffers() is False
    assert give_back_freed_memory() is False


def test_the_judging_process_answers_where_no_c_library_can_be_reached(windows_ctypes, tmp_path):
    """serve_judgements gives back the freed memory after each answer: its TypeError on Windows
    ended the judging process after its first check."""
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pt")
    args = parse_args(["--models", str(checkpoint), "--runtime", "torch", "--device", "cpu"])
    page, worker = multiprocessing.Pipe()
    try:
        page.send((tmp_path / "a.jpg", tmp_path, None))
        page.send((tmp_path / "b.jpg", tmp_path, None))
        page.send(None)
        serve_judgements(args, worker, lambda models, path, folder: ({"file": path.name, "pid": os.getpid()}, {}))
        answers = [page.recv() for _ in range(3)]
    finally:
        page.close()
        worker.close()
    assert answers[0] == ("ready", None)
    assert [answer[1][0]["file"] for answer in answers[1:]] == ["a.jpg", "b.jpg"]
