"""The page's models in a worker process (inference.app): it loads them once, then judges one
file at a time as inference.detect does, explanation images included.

A judgement past its time limit is stopped by killing the process: that frees its memory and
processors at once (a thread could only be abandoned, still holding them, and the next check
would run beside it). A new process is started at once and loads the models while the page
answers; the next judgement waits for it up to its own time limit or a minute, whichever is longer
(then gets "the models are still loading: try again", the load going on for the next one), and a
load that takes longer than LOAD_SECONDS (15 minutes) is stopped and started again. A process that
dies (out of memory, a crash in a decoder) is replaced the same way: the check it was judging, or
sending its file to it, gets an error naming why it stopped; one found dead while idle is replaced
before the next check is sent to it.
Processes fork from a server that imported this module once, so a new one only loads the models.

A check sent with its limits (inference/serving/upload_checks.py) has its file's headers and keyframes
read here first, under the same time limit: a video of thousands of 4K keyframes takes minutes to
read (a 17 MB one of 6000 held the page for 188 s), and only a process can be stopped at the limit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

from common import cli
from common.cli import InputError
from common.processes import worker_context
from inference.detectors.options import load_detectors
from inference.models.model_options import autocast_dtype
from inference.pipeline.faces import inference_detector
from inference.serving.detect_settings import resolve_scoring
from inference.serving.detection import examine
from inference.serving.heap import give_back_freed_memory
from inference.serving.upload_checks import UploadLimits, media_refusal
from inference.serving.verdict_options import VerdictRule, verdict_rule
from preprocess.faces.face_detector import default_device

logger = logging.getLogger("inference.serving.judge_worker")


@dataclass
class Models:
    args: argparse.Namespace
    device: torch.device
    members: list
    amp_dtype: torch.dtype | None
    detector: object
    rule: VerdictRule  # the ensemble file's calibration and what decides the verdict


def load_models(args: argparse.Namespace) -> Models:
    device = torch.device(args.device) if args.device else default_device()
    rule = verdict_rule(args)  # a calibration that cannot be used is refused before the models load
    precision = resolve_scoring(args, rule.calibration, device)  # the calibration's scoring settings
    members = load_detectors(args, device, precision)  # the detectors: inference/pipeline/detector.py
    detector = inference_detector(args.detector_scale, device, args.fast)
    return Models(args, device, members, autocast_dtype(device, precision, args.fp32), detector, rule)


def judge_file(models: Models, path: Path, folder: Path) -> tuple[dict, dict]:
    """The JSON document of one file and its explanation's images in memory; the images' files
    are written under `folder`, which the caller deletes."""
    models.args.explain = folder
    document = examine(path, models.detector, models.members, models.args, models.device, models.amp_dtype, models.rule)
    return document, _load_explanation(document.get("explanation"))


def serve_judgements(args: argparse.Namespace, connection, judge=judge_file) -> None:
    """The worker process: load the models, say ("ready", None) or ("failed", why), then answer
    each (path, folder, limits) with ("refused", why) when `limits` refuse the file (none: not
    checked), else ("judged", judge(models, path, folder)) or ("failed", why), until None or the
    page's end of the pipe closes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        models = load_models(args)
    except cli.BAD_INPUT as error:  # the page reports it (and exits, at start-up)
        connection.send(("failed", cli.describe(error)))
        return
    except Exception as error:
        logger.exception("loading the models failed")
        connection.send(("failed", f"loading the models failed ({type(error).__name__}: {error})"))
        return
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        path, folder, limits = request
        try:
            refusal = limits and media_refusal(path, limits)
            reply = ("refused", refusal) if refusal else ("judged", judge(models, path, folder))
        except Exception as error:
            logger.exception("judging %s failed", request[0])
            reply = ("failed", f"{type(error).__name__}: {error}")
        connection.send(reply)
        del reply
        give_back_freed_memory()  # the file's frames and images, once the page has its answer


class CheckTimeoutError(Exception):
    """A judgement took longer than its time limit (its process was killed)."""


class WorkerError(InputError):
    """The worker could not load the models, failed on a file, or died."""


class UploadRefusedError(InputError):
    """A file over the limits it was sent with: the message names it and the limit."""


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}" + (", out of memory?" if code == -signal.SIGKILL else "")
    return f"exit status {code}"


# How long a process may take to load the models (a big ensemble on a slow disk takes minutes):
# past it the process is stopped and the next check starts another.
LOAD_SECONDS = 900.0
# How long a check waits for a process that is loading the models (after the one before it was
# killed): its own time limit, but at least this, so that a short limit still lets a restart finish.
MIN_LOAD_WAIT_SECONDS = 60.0


class ModelWorker:
    """The models in a child process that judges one file at a time (see the module's docstring)."""

    def __init__(self, args: argparse.Namespace, judge=judge_file):
        self._args, self._judge = args, judge
        self._lock = threading.Lock()
        self._process = self._connection = None
        self._ready = False
        self._started = 0.0  # time.monotonic() when the process was started
        with self._lock:
            self._ensure_ready(LOAD_SECONDS)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _start(self) -> None:
        context = worker_context("inference.serving.judge_worker")
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=serve_judgements, args=(self._args, theirs, self._judge), name="deepfake-judge", daemon=True
        )
        self._process.start()
        theirs.close()  # so that its death reads as the end of the pipe here
        self._connection, self._ready, self._started = ours, False, time.monotonic()

    def _stop(self) -> None:
        if self._process is None:
            return
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._connection.close()
        self._process = self._connection = None
        self._ready = False

    def _receive(self, seconds: float | None):
        if not self._connection.poll(seconds):
            raise CheckTimeoutError
        try:
            return self._connection.recv()
        except (EOFError, OSError):  # the end of the pipe, or a reset of it: the process died
            return "failed", self._stopped()

    def _stopped(self) -> str:
        """Why the process stopped, once it has (its exit status read within a few seconds)."""
        self._process.join(timeout=5)
        return f"the process judging it stopped ({_exit_reason(self._process.exitcode)})"

    def _ensure_ready(self, seconds: float) -> None:
        """A process with the models loaded, waiting at most `seconds` for one that loads them (a
        WorkerError after that: the load goes on for the next check, up to LOAD_SECONDS)."""
        if self._process is not None and (not self._process.is_alive() or self._ready and self._connection.poll(0)):
            self._stop()  # it died while idle (killed from outside; an idle one says nothing): start another
        if self._ready:
            return
        if self._process is None:
            self._start()
        load_left = max(0.0, LOAD_SECONDS - (time.monotonic() - self._started))
        try:
            kind, payload = self._receive(min(seconds, load_left))
        except CheckTimeoutError:
            loading_for = time.monotonic() - self._started
            if seconds < load_left:
                raise WorkerError(
                    f"the models are still loading ({loading_for:.0f} s so far; the process judging files was "
                    "restarted): try again in a moment"
                ) from None
            logger.warning("the models did not load within %g s: killing process %d", LOAD_SECONDS, self.pid)
            self._stop()  # the next check starts another
            raise WorkerError(f"the models did not load within {LOAD_SECONDS:g} s") from None
        if kind != "ready":
            self._stop()  # the next check tries again
            raise WorkerError(payload)
        self._ready = True

    def judge(self, path: Path, folder: Path, seconds: float, limits: UploadLimits | None = None) -> tuple[dict, dict]:
        """judge_file's answer for `path`; UploadRefusedError when `limits` refuse it; CheckTimeoutError
        after `seconds`, its reading and judging together (the process killed and a new one
        started); WorkerError when the judgement failed, the process died, or a process restarted
        after the last check has not loaded the models within `seconds` (or MIN_LOAD_WAIT_SECONDS,
        if longer)."""
        with self._lock:
            self._ensure_ready(max(seconds, MIN_LOAD_WAIT_SECONDS))
            try:
                self._connection.send((path, folder, limits))
            except OSError:  # it died since it was last seen alive: its end of the pipe is closed
                reason = self._stopped()
                self._stop()
                self._start()
                raise WorkerError(reason) from None
            try:
                kind, payload = self._receive(seconds)
            except CheckTimeoutError:
                logger.warning("%s: not judged within %g s: killing process %d", path.name, seconds, self.pid)
                self._stop()
                self._start()
                raise
            if kind == "refused":
                raise UploadRefusedError(payload)
            if kind != "judged":
                if not self._process.is_alive():
                    self._stop()
                    self._start()
                raise WorkerError(payload)
            return payload

    def close(self) -> None:
        with self._lock:
            if self._process is not None and self._process.is_alive():
                with contextlib.suppress(OSError):
                    self._connection.send(None)
                self._process.join(timeout=5)
            self._stop()


def _read_rgb(path: str | None):
    if not path:
        return None
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _load_explanation(explanation: dict | None) -> dict:
    """The explanation's images in memory (its folder is removed once the file is judged)."""
    explanation = explanation or {}
    faces = [
        (_read_rgb(h["path"]), f"frame {h['frame']}: P(fake) {h['probability']:.3f}")
        for h in explanation.get("heatmaps", [])
    ]
    return {
        "plot": _read_rgb(explanation.get("plot")),
        "frame": _read_rgb(explanation.get("frame")),
        "faces": [(image, caption) for image, caption in faces if image is not None],
    }
