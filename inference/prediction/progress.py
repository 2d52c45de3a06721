"""A run's progress beside its output, so that a crash, a kill or a full disk loses at most the
videos in flight: inference.predict appends each video's details line (its score, its error if any,
what was found) to NAME.progress.jsonl beside the output NAME as the video finishes
(NAME.progress.rankRofN.jsonl per process under torchrun), and `--resume` goes on from there.

The first line records the settings that change scores (the models' files with their sizes and
times, frames, strategy, detector scale...): a run resumes only with the same settings. Each line
is flushed as it is written and the file fsynced every few seconds; a half-written last line (a
kill mid-write) is dropped on resume, and so is a line that is not a details line as predict writes
it (strict JSON, a finite score from 0 to 1, an error naming the file, each field of its type): its
video is scored again, and a warning names the file and the line. Each row also records its video's
size, modification time and the sha256 of its first MiB (`identity`): a video changed since it was
scored (replaced under the same name) is scored again, with a warning naming it and what changed. A
row without them (written before predict recorded them) cannot tell, so its video is scored again
too, and one warning says how many. inference.predict deletes the file once the final files are
written.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import math
import os
import reprlib
import time
from pathlib import Path

import torch

from common.cli import InputError
from common.io_utils import fsync_path, naming_errors
from inference.models.model_options import model_entries
from inference.pipeline.faces import DETECTION_REVISION
from inference.pipeline.file_identity import file_identity as stat_identity
from inference.pipeline.file_identity import identity_changes, is_identity

logger = logging.getLogger("inference.prediction.progress")

FORMAT = "inference.predict progress/1"
FSYNC_SECONDS = 5.0  # a power cut loses at most this much; a kill loses nothing flushed


class ProgressError(InputError):
    """A progress file that cannot be resumed from as asked (no --resume, other settings)."""


def progress_path(output: Path, rank: int = 0, world: int = 1) -> Path:
    """The progress file of `output`, of process `rank` of `world`."""
    suffix = "" if world == 1 else f".rank{rank}of{world}"
    return output.with_name(f"{output.name}.progress{suffix}.jsonl")


def progress_files(output: Path) -> list[Path]:
    """Every progress file of `output`, whatever the number of processes that wrote it."""
    return sorted(output.parent.glob(f"{glob.escape(output.name)}.progress*.jsonl"))


def check_progress_files(output: Path, rank: int, world: int, resume: bool) -> None:
    """Refuse to start over the progress of an unfinished run (without `resume`), and to resume one
    that another number of processes than `world` left (each process resumes its own share). Each
    process checks its own file: the others' may be new files of this very run."""
    ours = {progress_path(output, process, world) for process in range(world)}
    for path in progress_files(output):
        if path not in ours:
            raise ProgressError(
                f"{path}: progress of a run with another number of processes than {world}; resume it with as "
                "many as wrote it, or delete it to start again"
            )
    if not resume and progress_path(output, rank, world).exists():
        raise ProgressError(unfinished(progress_path(output, rank, world)))


def nothing_to_resume(output: Path, path: Path) -> str:
    """What --resume with no progress file `path` does: everything is scored, and a finished run's
    files (its progress deleted when they were written) are scored again and replaced."""
    finished = (
        f"{output} is there, from a run that finished: every video is scored again and its files replaced"
        if output.exists()
        else "every video is scored"
    )
    return f"--resume: no progress file {path}, nothing to resume; {finished}"


def unfinished(path: Path) -> str:
    return (
        f"{path}: progress of an unfinished run to this output; pass --resume to go on from it, or delete it to "
        "start again"
    )


def file_identity(path: str | os.PathLike) -> dict:
    """What tells one model file from another without reading it: where, how big, when written (under
    the keys the progress files have always had, so that a run of an earlier version still resumes)."""
    identity = stat_identity(path)
    return {"file": str(Path(path).resolve()), "bytes": identity["bytes"], "modified_ns": identity["mtime_ns"]}


def as_json(value):
    """`value` as it reads back from JSON (paths as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def differences(recorded: dict, current: dict) -> list[str]:
    """`key: before -> now` for each setting that differs."""

    def short(value) -> str:
        text = json.dumps(value, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    keys = sorted(set(recorded) | set(current))
    return [
        f"{key}: {short(recorded.get(key))} -> {short(current.get(key))}"
        for key in keys
        if recorded.get(key) != current.get(key)
    ]


def read_progress(path: Path) -> tuple[dict | None, dict[str, dict], int]:
    """(settings, rows by filename, length of the whole lines) of a progress file. A last line
    without its newline was cut by a kill mid-write and is left out; so is, with a warning naming
    the file and the line, a line that is not strict JSON (NaN and Infinity are refused) or not a
    details line as predict writes it (`row_problem`): its video is scored again."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    lines = data[:end].splitlines()
    if not lines:
        return None, {}, 0
    try:
        first = strict_json(lines[0])
    except (ValueError, RecursionError):
        first = None
    if not isinstance(first, dict) or first.get("format") != FORMAT or not isinstance(first.get("settings"), dict):
        raise ProgressError(f"{path}: not a progress file of inference.predict ({FORMAT}); delete it to start again")
    rows = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            row = strict_json(line)
        except (ValueError, RecursionError):
            logger.warning("%s:%d: not a whole row, its video is scored again", path, number)
            continue
        problem = row_problem(row)
        if problem:
            logger.warning(
                "%s:%d: not a row of inference.predict (%s), its video is scored again", path, number, problem
            )
            continue
        rows[row["filename"]] = row
    return first["settings"], rows, end


def strict_json(text: str | bytes):
    """JSON as the standard has it: NaN and Infinity, which Python's json reads, are refused."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_probability(value) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _mapping_of(check):
    return lambda value: isinstance(value, dict) and all(isinstance(k, str) and check(v) for k, v in value.items())


def _list_of(check):
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _is_error(value) -> bool:
    fields = ("filename", "stage", "reason")
    return value is None or (isinstance(value, dict) and all(isinstance(value.get(key), str) for key in fields))


# What a details line holds (inference/prediction/predict_folder.py, inference/pipeline/faces.py VideoFaces.details), as
# predict, evaluate and tools/gpu_workers.py read it back: a field of another type is not a row.
ROW_FIELDS = {
    "score": _is_probability,
    "ensemble_score": _is_probability,
    "calibrated": lambda value: isinstance(value, bool),
    "scoring": lambda value: isinstance(value, dict),
    "error": _is_error,
    "model_scores": _mapping_of(_is_probability),
    "face_scores": _list_of(_is_probability),
    "seconds": _mapping_of(_is_number),
    "frames_sampled": _is_count,
    "frames_requested": _is_count,
    "frames_decoded": _is_count,
    "frames_with_face": _is_count,
    "faces_per_frame": _list_of(_is_count),
    "partial": lambda value: isinstance(value, bool),
    "partial_reason": lambda value: value is None or isinstance(value, str),
    "clips": _mapping_of(_is_count),
    "boxes_found": _mapping_of(_is_count),
    "identity": is_identity,
}
REQUIRED_FIELDS = ("filename", "score", "error")
FIELD_WORDS = {
    "score": "a probability (a finite number from 0 to 1)",
    "error": "null or an object with filename, stage and reason",
    "identity": "an object with bytes, mtime_ns and head_sha256",
}


def row_problem(row) -> str | None:
    """Why `row` (a progress line, parsed) is not a finished video's details line, or None: a
    string filename, a finite score from 0 to 1, an error that is null or names the same file with
    its stage and reason, and each other field of its type."""
    if not isinstance(row, dict):
        return f"a {type(row).__name__}, not an object"
    missing = [key for key in REQUIRED_FIELDS if key not in row]
    if missing:
        return f"no {', '.join(missing)}"
    if not isinstance(row["filename"], str) or not row["filename"]:
        return f"filename {reprlib.repr(row['filename'])} is not a file name"
    wrong = [key for key, check in ROW_FIELDS.items() if key in row and not check(row[key])]
    if wrong:
        return "; ".join(
            f"{key} {reprlib.repr(row[key])} is not {FIELD_WORDS.get(key, 'of its type')}" for key in wrong
        )
    if row["error"] is not None and row["error"]["filename"] != row["filename"]:
        return f"its error names another file, {reprlib.repr(row['error']['filename'])}"
    return None


class Progress:
    """The finished videos of one process: `rows` (those of an earlier run, when resumed), and
    `add` for each video as it finishes. A context manager: closed (and fsynced) on leaving."""

    def __init__(self, path: Path, settings: dict, resume: bool):
        self.path, self.rows = path, {}
        settings = as_json(settings)
        whole = 0
        if path.exists():
            if not resume:
                raise ProgressError(unfinished(path))
            recorded, self.rows, whole = read_progress(path)
            if recorded is not None and recorded != settings:
                raise ProgressError(
                    f"{path}: written with other settings ({'; '.join(differences(recorded, settings))}); resume "
                    "with the same ones, or delete it to start again"
                )
        self._synced = float("-inf")
        with naming_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                os.truncate(path, whole)
            self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        if whole == 0:
            try:
                self._write(json.dumps({"format": FORMAT, "settings": settings}, allow_nan=False))
                with naming_errors(path.parent):
                    fsync_path(path.parent)
            except BaseException:
                self.close(check=False, failed=True)
                raise

    def _write(self, line: str) -> None:
        with naming_errors(self.path):
            self._handle.write(line + "\n")
            self._handle.flush()
            if time.monotonic() - self._synced >= FSYNC_SECONDS:
                os.fsync(self._handle.fileno())
                self._synced = time.monotonic()

    def add(self, row: dict, identity: dict | None = None) -> None:
        """Record a finished video (a details line, with `filename`, `score` and `error`) and the
        `identity` of its file (inference/pipeline/file_identity.py, with head), which resuming checks."""
        row = row if identity is None else {**row, "identity": identity}
        self._write(json.dumps(row, allow_nan=False))
        self.rows[row["filename"]] = row

    def close(self, check: bool = True, failed: bool = False) -> None:
        """fsync and close; with `check` False (closing after another error), quietly. When the run
        `failed` before any video was recorded, the file (settings alone) goes: nothing to resume."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if failed and not self.rows:
            with contextlib.suppress(OSError):
                handle.close()
            self.path.unlink(missing_ok=True)
            return
        try:
            with naming_errors(self.path):
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            if check:
                raise
        finally:
            with contextlib.suppress(OSError):  # a flush that failed fails again: the first error said so
                handle.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.close(check=error_type is None, failed=error_type is not None)


def unchanged_rows(path: Path, rows: dict[str, dict], files: dict[str, Path]) -> dict[str, dict]:
    """The rows of `path` (by filename) whose video in `files` ({filename: path}) is the file they
    were scored from, without their `identity`. A video changed since is scored again, with a warning
    naming it and what changed; a row without an identity (an earlier predict's) cannot tell, so its
    video is scored again too, and one warning says how many."""
    kept, unknown = {}, 0
    for name, file in files.items():
        row = rows.get(name)
        if row is None:
            continue
        if "identity" not in row:
            unknown += 1
            continue
        change = identity_changes(row["identity"], file)
        if change:
            logger.warning("%s: changed since its row in %s was written (%s): scored again", name, path, change)
            continue
        kept[name] = {key: value for key, value in row.items() if key != "identity"}
    if unknown:
        logger.warning(
            "%s: %d rows without their video's size, time and hash (an earlier predict wrote them): those videos "
            "are scored again, as one of them may have been replaced since",
            path,
            unknown,
        )
    return kept


# Options that change where the files go or how fast, not the scores: a run may resume with others.
NOT_SCORING_OPTIONS = ("output", "errors", "resume", "batch_size", "workers", "runtime_cache", "device")


def run_settings(args: argparse.Namespace, device: torch.device, precision: str, world: int, calibration=None) -> dict:
    """What a resumed run must share with the run it resumes: every option that changes scores, the
    models' files (where, how big, when written), the device's type, the precision, the number of
    processes (each scores its share) and the calibration applied (an EnsembleCalibration, or None)."""
    entries = model_entries(args)
    settings = {key: value for key, value in vars(args).items() if key not in NOT_SCORING_OPTIONS}
    del settings["models"], settings["ensemble"]  # the files themselves, below, wherever the run started from
    models = [
        {
            **file_identity(e["path"]),
            **{key: e[key] for key in ("encoder", "input_size", "weight")},
            **({"detector": e["detector"]} if e.get("detector") else {}),  # another paper's format
        }
        for e in entries
    ]
    return {
        **settings,
        "test_dir": str(args.test_dir.resolve()),
        "models": models,
        "device": device.type,
        "precision": precision,
        "processes": world,
        "calibration": None if calibration is None else calibration_settings(calibration),
        "detection_revision": DETECTION_REVISION,
    }


def calibration_settings(calibration) -> dict:
    """What of an EnsembleCalibration a resumed run must share: its method and operating points."""
    points = [{"fpr": point.fpr, "score": point.score} for point in calibration.operating_points]
    return {**calibration.method_parameters(), "operating_points": points}
