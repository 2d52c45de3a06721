"""Every command ends on bad input with one line, `error: <file>: <problem>`, and exit status 2;
`--debug` shows the traceback instead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from common import cli
from inference.fitting import ensemble_fit as fit_ensemble
from inference.models import named_weights as weights
from inference.prediction import predict_folder as predict
from inference.scoring import submission_scoring as score
from inference.serving import detection as detect
from preprocess import datasets, detect_faces
from tests.conftest import REPO_ROOT
from training import train
from training.models.zoo import create_model


@pytest.fixture(scope="module")
def files(tmp_path_factory, demo_world):
    folder = tmp_path_factory.mktemp("bad_input")
    (folder / "empty").mkdir()
    (folder / "videos").mkdir()
    video = sorted((demo_world / "test_videos").glob("*.mp4"))[0]
    (folder / "videos" / video.name).symlink_to(video)
    (folder / "corrupt.pt").write_bytes(b"\x80\x04 not a checkpoint at all")
    torch.save(create_model("resnet18").state_dict(), folder / "bare.pt")
    (folder / "submission.csv").write_text("filename,label\na.mp4,0.5\n")
    return folder


CASES = {
    "predict: a folder with no videos": (
        predict.main,
        lambda f: ["--test-dir", str(f / "empty"), "--models", str(f / "bare.pt"), "--encoder", "resnet18"],
        lambda f: f"error: {f / 'empty'}: no videos",
    ),
    "predict: a corrupt checkpoint": (
        predict.main,
        lambda f: ["--test-dir", str(f / "videos"), "--models", str(f / "corrupt.pt"), "--output", str(f / "s.csv")],
        lambda f: f"error: {f / 'corrupt.pt'}: refused to load: not a checkpoint that a weights-only load can read",
    ),
    "predict: a missing checkpoint": (
        predict.main,
        lambda f: ["--test-dir", str(f / "videos"), "--models", str(f / "gone.pt"), "--output", str(f / "s.csv")],
        lambda f: f"error: {f / 'gone.pt'}: checkpoint file does not exist",
    ),
    "detect: a corrupt checkpoint": (
        detect.main,
        lambda f: [str(f / "videos"), "--models", str(f / "corrupt.pt")],
        lambda f: f"error: {f / 'corrupt.pt'}: refused to load",
    ),
    "detect: a folder with no videos or photos": (
        detect.main,
        lambda f: [str(f / "empty"), "--models", str(f / "bare.pt"), "--encoder", "resnet18"],
        lambda f: f"error: {f / 'empty'}: no videos or photos",
    ),
    "train: a missing folds.csv": (
        train.main,
        lambda f: ["--config", str(REPO_ROOT / "configs" / "demo.yaml"), "--data-dir", str(f / "empty"), "--fold", "0"],
        lambda f: f"error: {f / 'empty' / 'folds.csv'}: folds file missing",
    ),
    "score: missing labels": (
        score.main,
        lambda f: ["--submission", str(f / "submission.csv"), "--labels", str(f / "labels.csv")],
        lambda f: f"error: {f / 'labels.csv'}",
    ),
    "datasets: a root that is not a dataset": (
        datasets.main,
        lambda f: ["--root-dir", str(f / "nothing_here")],
        lambda f: f"error: {f / 'nothing_here'}",
    ),
    "detect_faces: a root that is not a dataset": (
        detect_faces.main,
        lambda f: ["--root-dir", str(f / "nothing_here")],
        lambda f: f"error: {f / 'nothing_here'}",
    ),
    "fit_ensemble: runs without predictions": (
        fit_ensemble.main,
        lambda f: [str(f / "run_a"), str(f / "run_b"), "--out", str(f / "ensemble.yaml")],
        lambda f: f"error: {f / 'run_a'}",
    ),
    "weights: an unknown ensemble": (
        weights.main,
        lambda f: ["fetch", "newest", "--dir", str(f / "weights")],
        lambda f: "error: no ensemble named 'newest'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_ends_in_one_line_and_status_2(case, files, capsys):
    main, argv, expected = CASES[case]
    assert cli.run(main, argv(files)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(expected(files)), err[-3:]
    assert not any("Traceback" in line for line in err)


@pytest.mark.slow
def test_debug_shows_the_traceback_from_the_command_line(files):
    models = ["--models", str(files / "bare.pt"), "--encoder", "resnet18"]
    command = [sys.executable, "-m", "inference.predict", "--test-dir", str(files / "empty"), *models]
    # without --debug the same command is one line (as every case above, run in-process: the
    # interpreter costs seconds); with it, from the command line, the traceback
    debug = subprocess.run([*command, "--debug"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "InputError" in debug.stderr


def test_leave_ends_at_once_with_everything_written(tmp_path):
    """`cli.leave` skips the interpreter's shutdown (about 1 s once torch is imported) but loses
    nothing written: stdout block-buffered into a pipe, a log file's handler, and the status."""
    script = (
        "import logging, sys\n"
        "from common import cli\n"
        f"logging.basicConfig(filename={str(tmp_path / 'run.log')!r}, level=logging.INFO)\n"
        "logging.getLogger('x').info('logged last')\n"
        "print('x' * 100000, end='')\n"
        "print('to stderr', end='', file=sys.stderr)\n"
        "cli.leave(3)\n"
        "print('never')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stdout == "x" * 100000 and done.stderr == "to stderr"
    assert (tmp_path / "run.log").read_text().strip().endswith("logged last")


def test_leave_with_standard_output_closed_ends_with_its_status():
    """A command started with stdout closed (`>&-`): Python's sys.stdout is None; leave() crashed
    on it with exit 1, which predict uses for "every video failed" (issue 28's review)."""
    script = "from common import cli\ncli.leave(0)\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        stdout=None,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr


WRITES_FOREVER = (
    "import sys\n"
    "from common import cli\n"
    "def main(argv):\n"
    "    while True:\n"
    "        print('x' * 4096, flush=True)\n"
    "sys.exit(cli.run(main))\n"
)


def test_a_reader_that_stops_reading_ends_the_command_quietly():
    """`detect ... --json | head -c 10`: the pipe's reader goes away; the command ends with 141 (as a
    shell reports SIGPIPE) and says nothing, where it said `error: [Errno 32] Broken pipe`, exit 2."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITES_FOREVER], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.read(10)
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == cli.BROKEN_PIPE_STATUS and err == b"", err


def test_a_broken_pipe_elsewhere_is_an_error_like_any_other(capsys):
    def main(argv):
        raise BrokenPipeError(32, "Broken pipe", "upload socket")

    assert cli.run(main, []) == 2
    assert capsys.readouterr().err.strip() == "error: upload socket: Broken pipe"
