"""inference.predict survives: a killed run resumes from its progress file without reading again the
videos it scored, a full disk names the file and keeps the progress, a resume with other settings is
refused, and a checkpoint that gives NaN makes an error row, never a NaN in the files."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common import cli
from inference.pipeline.faces import DETECTION_REVISION
from inference.pipeline.file_identity import file_identity
from inference.pipeline.reader import FaceReader
from inference.prediction import predict_folder as predict
from inference.prediction import progress as progress_module
from inference.prediction.progress import Progress, ProgressError, check_progress_files, progress_path, run_settings
from tests.conftest import REPO_ROOT, dfdc_metadata, save_tiny_checkpoint
from tests.full_disk import FullDisk
from tests.test_io_utils import DiskLog

# runs resumed, refused and run again over the same videos, each compared with one uninterrupted
# run: each frame through MTCNN once in this process (tests/detection_memo.py)
pytest_plugins = ("tests.detection_memo",)  # its `remembered_detections` fixture
pytestmark = pytest.mark.usefixtures("remembered_detections")

VIDEOS = 5


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _strict_json(line: str) -> dict:
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


def _details(path: Path) -> list[dict]:
    return [_strict_json(line) for line in path.read_text().splitlines()]


def _arguments(test_dir: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    # one process reading one video at a time, each classified as soon as read: a row per video as it finishes
    common = ["--runtime", "torch", "--device", "cpu", "--frames", "4", "--batch-size", "1", "--workers", "0"]
    return ["--test-dir", str(test_dir), "--models", str(checkpoint), "--output", str(out), *common, *extra]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture(scope="module")
def sources(demo_world) -> list[Path]:
    return sorted(dfdc_metadata(demo_world))[:VIDEOS]


def _folder(tmp_path: Path, sources: list[Path]) -> Path:
    test_dir = tmp_path / "videos"
    test_dir.mkdir()
    for source in sources:
        (test_dir / source.name).symlink_to(source)
    return test_dir


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, sources, checkpoint) -> Path:
    """The submission of an uninterrupted run."""
    tmp_path = tmp_path_factory.mktemp("reference")
    out = tmp_path / "out" / "submission.csv"
    assert predict.main(_arguments(_folder(tmp_path, sources), checkpoint, out)) == 0
    assert _rows(out.parent / "errors.csv") == []
    return out


@pytest.fixture(scope="module")
def reference(reference_run) -> dict[str, float]:
    """Each video's score in an uninterrupted run, as its details line has it (unrounded)."""
    return {row["filename"]: row["score"] for row in _details(reference_run.parent / "details.jsonl")}


def _record_reads(monkeypatch) -> list[str]:
    """The names of the videos read from now on (a video changed since its row was written would be
    read again, so the videos done are left as they are and their reads counted instead)."""
    read, names = FaceReader._read, []

    def recorded(self, path, *ahead):
        names.append(path.name)
        return read(self, path, *ahead)

    monkeypatch.setattr(FaceReader, "_read", recorded)
    return names


def _as_recorded(row: dict, test_dir: Path) -> dict:
    """A details line as predict's progress holds it: with its video's size, time and first MiB's hash."""
    return {**row, "identity": file_identity(test_dir / row["filename"], head=True)}


def _progress_rows(path: Path) -> list[str]:
    """The filenames of the whole rows of a progress file (its first line holds the settings)."""
    lines = path.read_bytes().split(b"\n")[1:-1]
    return [json.loads(line)["filename"] for line in lines]


def _check_resumed(out: Path, reference: dict[str, float]) -> None:
    rows = _rows(out)
    assert [row["filename"] for row in rows] == sorted(reference), "exactly one row per video"
    for row in rows:  # written with six decimals: one unit of the last, as rounded, on top of 1e-6
        assert float(row["label"]) == pytest.approx(reference[row["filename"]], abs=1.5e-6), row
    assert _rows(out.parent / "errors.csv") == []
    details = _details(out.parent / "details.jsonl")
    assert [d["filename"] for d in details] == sorted(reference)
    assert all(d["score"] == pytest.approx(reference[d["filename"]], abs=1e-6) for d in details), details
    assert sorted(p.name for p in out.parent.iterdir()) == ["details.jsonl", "errors.csv", "submission.csv"]


def test_a_killed_run_resumes_without_reading_the_videos_done_again(
    tmp_path, sources, checkpoint, reference, caplog, monkeypatch
):
    test_dir = _folder(tmp_path, sources)
    out = tmp_path / "out" / "submission.csv"
    command = [sys.executable, "-m", "inference.predict", *_arguments(test_dir, checkpoint, out)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stderr=subprocess.PIPE, text=True)
    progress = progress_path(out)
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        if progress.exists() and progress.read_bytes().count(b"\n") >= 3:  # the settings and two videos
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == -signal.SIGKILL, f"no progress file with rows before the run ended:\n{stderr[-3000:]}"
    assert not out.exists()
    done = _progress_rows(progress)
    assert 2 <= len(done) < VIDEOS
    reads = _record_reads(monkeypatch)
    with open(progress, "a") as handle:
        handle.write('{"filename": "' + sorted(reference)[-1])  # a line cut short by the kill: ignored

    caplog.set_level(logging.INFO, logger="inference.predict")
    assert predict.main([*_arguments(test_dir, checkpoint, out), "--resume"]) == 0
    assert f"{len(done)} of these scored already" in caplog.text
    assert sorted(reads) == sorted(set(reference) - set(done)), "the videos done are not read again"
    _check_resumed(out, reference)


def test_a_disk_full_mid_run_names_the_file_and_keeps_the_rows_for_resume(
    tmp_path, sources, checkpoint, reference, monkeypatch, capsys
):
    test_dir = _folder(tmp_path, sources)
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    disk = FullDisk(monkeypatch, out.parent)
    read, videos_read = FaceReader._read, []

    def read_then_fill_the_disk(self, path, *ahead):
        videos_read.append(path.name)
        if len(videos_read) == 3:
            disk.room = 10  # the disk fills up while the third video is read: its row is cut after 10 bytes
        return read(self, path, *ahead)

    monkeypatch.setattr(FaceReader, "_read", read_then_fill_the_disk)
    arguments = _arguments(test_dir, checkpoint, out)
    assert cli.run(predict.main, arguments) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: {progress_path(out)}: No space left on device"
    assert _progress_rows(progress_path(out)) == videos_read[:2], "the rows written before the disk filled are kept"
    assert not out.exists()

    monkeypatch.undo()  # space freed
    reads = _record_reads(monkeypatch)
    assert cli.run(predict.main, [*arguments, "--resume"]) == 0, capsys.readouterr().err
    assert sorted(reads) == sorted(set(reference) - set(videos_read[:2])), "the rows kept are not read again"
    _check_resumed(out, reference)


def test_a_disk_full_at_the_end_names_the_submission_and_a_resume_reads_nothing_again(
    tmp_path, sources, checkpoint, reference, monkeypatch, capsys
):
    test_dir = _folder(tmp_path, sources)
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    FullDisk(monkeypatch, out.parent, room=0, affected=lambda name: name.startswith(f".{out.name}."))
    arguments = _arguments(test_dir, checkpoint, out)
    assert cli.run(predict.main, arguments) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {out}: No space left on device"
    assert sorted(p.name for p in out.parent.iterdir()) == [progress_path(out).name], "no half file, no temporary"
    monkeypatch.undo()

    reads = _record_reads(monkeypatch)
    assert cli.run(predict.main, [*arguments, "--resume"]) == 0, capsys.readouterr().err
    assert reads == [], "every video was scored: none is read again"
    _check_resumed(out, reference)


@pytest.mark.slow
def test_each_torchrun_process_resumes_its_own_share(tmp_path, sources, checkpoint, reference_run, reference):
    test_dir = _folder(tmp_path, sources)
    out = tmp_path / "out" / "submission.csv"
    arguments = _arguments(test_dir, checkpoint, out, "--resume")
    settings = run_settings(predict.parse_args(arguments), torch.device("cpu"), "f32", 2)
    details = {d["filename"]: d for d in _details(reference_run.parent / "details.jsonl")}
    names = sorted(details)
    done = {0: names[0::2][:1], 1: names[1::2]}  # process 0 was stopped after its first video, process 1 finished
    marked = 0.25  # the rows recorded say 0.25: a video read again would get its own score
    for rank, finished in done.items():
        with Progress(progress_path(out, rank, 2), settings, resume=False) as progress:
            for name in finished:
                progress.add(_as_recorded({**details[name], "score": marked}, test_dir))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    result = subprocess.run(
        [*torchrun, "-m", "inference.predict", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of these scored already" in result.stderr, "process 0 went on after its first video"
    _check_resumed(out, {**reference, **{name: marked for name in [*done[0], *done[1]]}})


def test_the_files_reach_the_disk_before_they_replace_the_old(tmp_path, sources, checkpoint, monkeypatch):
    test_dir = _folder(tmp_path, sources[:1])
    out = tmp_path / "out" / "submission.csv"
    log = DiskLog(monkeypatch)
    assert predict.main(_arguments(test_dir, checkpoint, out)) == 0
    for name in ("submission.csv", "errors.csv", "details.jsonl"):
        assert log.synced_before_renamed(out.parent / name), (name, log.events)


def _progress_left(tmp_path: Path, sources: list[Path], checkpoint: Path, monkeypatch) -> tuple[Path, list[str]]:
    """A progress file of a run stopped by a full disk at its end, and that run's arguments."""
    test_dir = _folder(tmp_path, sources[:2])
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    with monkeypatch.context() as patches:
        FullDisk(patches, out.parent, room=0, affected=lambda name: name.startswith(f".{out.name}."))
        arguments = _arguments(test_dir, checkpoint, out)
        assert cli.run(predict.main, arguments) == 2
    assert progress_path(out).exists()
    return out, arguments


def test_resuming_with_other_settings_or_without_resume_is_refused(tmp_path, sources, checkpoint, monkeypatch, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(checkpoint.read_bytes())
    out, arguments = _progress_left(tmp_path, sources, model, monkeypatch)
    progress = progress_path(out)
    capsys.readouterr()
    before = progress.read_bytes()

    def refused(argv: list[str], *words: str) -> None:
        assert cli.run(predict.main, argv) == 2
        [line] = capsys.readouterr().err.strip().splitlines()[-1:]
        assert line.startswith(f"error: {progress}: ") and all(word in line for word in words), line
        assert progress.read_bytes() == before, "the progress is kept as it was"
        assert not out.exists()

    refused(arguments, "pass --resume")
    refused([*arguments, "--resume", "--frames", "8"], "other settings", "frames: 4 -> 8")
    refused([*arguments, "--resume", "--tta"], "other settings", "tta: false -> true")
    refused([*arguments, "--resume", "--default-score", "0.4"], "default_score: 0.5 -> 0.4")
    monkeypatch.setattr(progress_module, "DETECTION_REVISION", DETECTION_REVISION + 1)  # faces found another way
    refused([*arguments, "--resume"], "other settings", f"detection_revision: {DETECTION_REVISION} -> ")
    monkeypatch.setattr(progress_module, "DETECTION_REVISION", DETECTION_REVISION)
    os.utime(model, ns=(0, model.stat().st_mtime_ns + 10**9))  # the checkpoint was written again
    refused([*arguments, "--resume"], "other settings", "models:")


def test_a_run_that_fails_before_its_first_video_leaves_nothing_to_resume(tmp_path, checkpoint, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out" / "submission.csv"
    for _ in range(2):  # the second run is not told to --resume a progress file the first left
        assert cli.run(predict.main, _arguments(tmp_path / "empty", checkpoint, out)) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"error: {tmp_path / 'empty'}: no videos or photos"), line
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_progress_of_another_number_of_processes_is_refused(tmp_path):
    out = tmp_path / "submission.csv"
    progress_path(out, 1, 2).write_text("{}\n")
    check_progress_files(out, 1, 2, resume=True)
    check_progress_files(out, 0, 2, resume=False)  # process 1's file may be a new one of this run: process 1 decides
    with pytest.raises(ProgressError, match=r"rank1of2\.jsonl: progress of an unfinished run.*pass --resume"):
        check_progress_files(out, 1, 2, resume=False)
    with pytest.raises(ProgressError, match=r"rank1of2\.jsonl: progress of a run with another number of processes"):
        check_progress_files(out, 0, 1, resume=True)


BAD_ROWS = {
    "no filename": '{"score": 0.5, "error": null}',
    "filename not a string": '{"filename": 42, "score": 0.5, "error": null}',
    "no score": '{"filename": "NAME", "error": null}',
    "no error": '{"filename": "NAME", "score": 0.5}',
    "error a string": '{"filename": "NAME", "score": 0.5, "error": "boom"}',
    "error without its reason": '{"filename": "NAME", "score": 0.5, "error": {"filename": "NAME", "stage": "decode"}}',
    "error of another file": (
        '{"filename": "NAME", "score": 0.5, "error": {"filename": "x.mp4", "stage": "decode", "reason": "r"}}'
    ),
    "NaN score": '{"filename": "NAME", "score": NaN, "error": null}',
    "infinite score": '{"filename": "NAME", "score": Infinity, "error": null}',
    "score above 1": '{"filename": "NAME", "score": 7.5, "error": null}',
    "negative score": '{"filename": "NAME", "score": -0.1, "error": null}',
    "score a string": '{"filename": "NAME", "score": "abc", "error": null}',
    "score a boolean": '{"filename": "NAME", "score": true, "error": null}',
    "NaN face score": '{"filename": "NAME", "score": 0.5, "error": null, "face_scores": [0.5, NaN]}',
    "face scores a string": '{"filename": "NAME", "score": 0.5, "error": null, "face_scores": "0.5"}',
    "model scores a list": '{"filename": "NAME", "score": 0.5, "error": null, "model_scores": [0.5]}',
    "identity without its hash": '{"filename": "NAME", "score": 0.5, "error": null, "identity": {"bytes": 5}}',
    "a list": '["NAME", 0.5]',
    "a number": "0.5",
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_progress_line_that_is_not_a_row_is_scored_again_not_trusted(
    case, tmp_path, sources, checkpoint, reference_run, reference, caplog, capsys
):
    kept, again = sorted(reference)[:2]
    test_dir = _folder(tmp_path, [source for source in sources if source.name in (kept, again)])
    out = tmp_path / "out" / "submission.csv"
    arguments = [*_arguments(test_dir, checkpoint, out), "--resume"]
    settings = run_settings(predict.parse_args(arguments), torch.device("cpu"), "f32", 1)
    details = {d["filename"]: d for d in _details(reference_run.parent / "details.jsonl")}
    with Progress(progress_path(out), settings, resume=False) as progress:
        progress.add(_as_recorded(details[kept], test_dir))  # line 2: a row as predict writes it, taken as it is
    with open(progress_path(out), "a") as handle:
        handle.write(BAD_ROWS[case].replace("NAME", again) + "\n")  # line 3

    caplog.set_level(logging.INFO, logger="inference")
    assert cli.run(predict.main, arguments) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert f"{progress_path(out)}:3: " in caplog.text and "its video is scored again" in caplog.text
    assert "1 of these scored already" in caplog.text, "the whole row is kept"
    rows = _rows(out)
    assert [row["filename"] for row in rows] == [kept, again], "exactly one row per video"
    labels = [float(row["label"]) for row in rows]
    assert all(math.isfinite(label) and 0 <= label <= 1 for label in labels), rows
    assert labels == pytest.approx([reference[kept], reference[again]], abs=1.5e-6), "the video was scored again"
    assert _rows(out.parent / "errors.csv") == []
    assert [d["filename"] for d in _details(out.parent / "details.jsonl")] == [kept, again]


def test_a_resume_after_a_finished_run_says_that_it_scores_everything_again(
    tmp_path, sources, checkpoint, caplog, monkeypatch
):
    """Review 1, T6: --resume after a run that finished (its progress file deleted by then) scored
    every video again without a word."""
    test_dir = _folder(tmp_path, sources[:1])
    out = tmp_path / "out" / "submission.csv"
    caplog.set_level(logging.INFO, logger="inference.predict")
    assert predict.main([*_arguments(test_dir, checkpoint, out), "--resume"]) == 0
    progress = progress_path(out)
    first = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("--resume: ")]
    said = f"--resume: no progress file {progress}, nothing to resume; every video is scored"
    assert first == [(logging.INFO, said)], "a first run (evaluate always passes --resume): news, not a warning"
    caplog.clear()
    reads = _record_reads(monkeypatch)
    assert predict.main([*_arguments(test_dir, checkpoint, out), "--resume"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"--resume: no progress file {progress}, nothing to resume; {out} is there, from a run that finished: "
        "every video is scored again and its files replaced"
    ]
    assert reads == [sources[0].name]
