"""Score every video or photo of a folder and write the submission: filename,label (P(fake)).

    python -m inference.predict --test-dir DIR --models CKPT [CKPT ...] --output submission.csv
    python -m inference.predict --test-dir DIR --ensemble configs/ensemble.yaml --output submission.csv
    python -m inference.predict --test-dir DIR --ensemble original  # after: python -m inference.weights fetch original

Per video: 32 evenly spaced frames, MTCNN (thresholds 0.7/0.8/0.8) on frames at half size as
the original did (`--detector-scale rule` scales by resolution; unless `--no-recall-boost`, a
frame without a face is tried again, see inference/pipeline/faces.py), every face cropped with a third of
margin, resized isotropically and centred on a black square, scored by each model (on a CPU run
by OpenVINO, see inference/models/runtime.py); per model the frame probabilities are aggregated
(`--strategy confident`, the winning one), and the models' scores averaged by their weights.
Faces of consecutive videos are classified together until a batch is full. On CUDA, faces of the
next videos are detected in a background thread while the current ones are classified; on a CPU,
the next video's sampled frames are decoded in one (inference/pipeline/reader.py). `--fast`
trades exactness for speed (scores close to the default's, not equal: docs/speed.md "Fast mode"): the
sampled frames decoded with the frames no other needs skipped (the same pixels); on a CPU, MTCNN's
image pyramid on every fourth sampled frame only and its last two networks on the boxes around the
others (inference/pipeline/face_tracks.py), and the classifiers in bf16 where bf16 was measured faster than
fp32 on this CPU (inference/models/bf16_speed.py; `--fp32` keeps fp32). On CUDA only the decoding
changes (the scores are the default's), and a warning and each details line say so.

Under torchrun (`torchrun --nproc_per_node=N -m inference.predict ...`) each process scores every
N-th video on its own device (GPU `LOCAL_RANK`, or the CPU with gloo) and rank 0 gathers the rows
and alone writes the files, which hold the same rows as one process would write.

Every input video gets exactly one row. A video that cannot be decoded, has no frames or no face
gets `--default-score` (0.5) and a row in errors.csv (filename, stage, reason). When every video
failed, the files are written all the same and the exit status is 1, after one line naming
errors.csv. details.jsonl beside the submission has one line per video: its score and each
model's, frames sampled and with a face, faces per frame, how the boxes were found, and seconds to
decode, detect and classify (or the error), and each face's score (the frame models' weighted
mean). A score that is not a finite number (a broken checkpoint giving NaN), or one outside 0 to 1
(a detector's bug), is an error of stage classify, never a NaN in the files.

An --ensemble file with a `calibration:` block (python -m inference.calibrate writes it; see
inference/models/ensemble_calibration.py) has it applied: the submission's label is the calibrated
probability of the ensemble's score, and the details line keeps that raw score as "ensemble_score",
with "calibrated": true. Model and face scores in details stay raw; a failed video keeps
--default-score, uncalibrated. `--uncalibrated` ignores the block: the labels are the raw scores.
Each details line records the settings that made its score ("scoring": detector scale, frames,
strategy, per-person, TTA, recall boost, fast mode, precision, cropped faces;
inference/scoring/scoring_settings.py), and a calibration made for other settings is refused before a
video is read (one line naming each difference; --ignore-calibration-settings applies it anyway).

Runs survive: as each video finishes, its details line is appended to OUTPUT.progress.jsonl beside
the output (OUTPUT.progress.rankRofN.jsonl per process under torchrun; see inference/prediction/progress.py),
so a crash, a kill or a full disk loses at most the videos in flight. `--resume` goes on from it
and does not read those videos again, unless one was changed since (its size, time and first MiB's
hash are recorded with its row; a row without them, of an earlier version, is scored again): that
one is scored again, with a warning naming it. Its first line records the settings that change scores (the
options, the models' files with their sizes and times, device, precision, processes), and other
settings are refused with a one-line error. Without --resume an existing progress file stops the
run (pass --resume, or delete it). The final files are written whole under a temporary name,
fsynced and renamed, and the progress files deleted (so a --resume after a finished run finds none
and scores every video again, with a warning saying so). A file that cannot be written ends the run
with one line naming it (`error: FILE: No space left on device`), the progress kept for --resume.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from common import cli
from common.cli import InputError
from common.records import MEDIA_SUFFIXES, media_files
from common.video_io import VideoReadError
from inference.detectors.options import as_ensemble, load_detectors
from inference.models.ensemble import Member
from inference.models.ensemble_calibration import EnsembleCalibration
from inference.models.model_options import autocast_dtype, cpu_precision
from inference.pipeline.detector import Ensemble, Run
from inference.pipeline.faces import DetectionError, VideoFaces
from inference.pipeline.file_identity import video_identity
from inference.pipeline.reader import FaceReader
from inference.prediction import predict_options
from inference.prediction.progress import (
    Progress,
    check_progress_files,
    nothing_to_resume,
    progress_path,
    run_settings,
    unchanged_rows,
)
from inference.prediction.submission import write_outputs
from inference.scoring.scoring_settings import check_settings, fast_mode, scoring_settings
from training.loop.distributed import all_gather_objects, cleanup, init_distributed, is_main_process
from training.models.zoo import CheckpointError

logger = logging.getLogger("inference.predict")


def parse_args(argv=None) -> argparse.Namespace:
    return predict_options.parse_args(argv, __doc__)


def list_videos(test_dir: Path, recursive: bool = False) -> list[Path]:
    """The videos and photos of `test_dir` (and of its subfolders, if `recursive`), sorted."""
    if not test_dir.is_dir():
        raise InputError(f"{test_dir}: not a folder")
    videos = media_files(test_dir, recursive)
    if not videos:
        raise InputError(f"{test_dir}: no videos or photos ({', '.join(sorted(MEDIA_SUFFIXES))}) in this folder")
    return videos


def score_videos(
    videos: list[VideoFaces], detectors: Ensemble | list[Member], args, device, amp_dtype
) -> list[tuple[float, dict[str, float], list[float]]]:
    """Each video's score, each model's (by file name; by position too where two names are the
    same) and each face's (the face view's models' weighted mean): the detectors' arithmetic
    (inference/pipeline/detector.py). Each detector scores the units of all the videos together,
    in batches of `--batch-size`, so that a GPU gets full batches even from videos with few faces."""
    ensemble = as_ensemble(detectors, args)
    scored = ensemble.score(videos, Run.from_args(args, device, amp_dtype))
    return [(video.score, video.model_scores, video.face_scores) for video in scored]


class NonFiniteVideoScoreError(ValueError):
    """A video's score (or a model's or a face's) that is not a finite number: an error for that
    video, never a NaN in the submission."""


def non_finite(score: float, model_scores: dict[str, float], face_scores: list[float]) -> str | None:
    """What is not a probability among a video's scores (not a finite number, or outside 0 to 1),
    or None when all are."""

    def bad(value: float) -> bool:
        return not (math.isfinite(value) and 0.0 <= value <= 1.0)

    models = [f"{key}: {value}" for key, value in model_scores.items() if bad(value)]
    faces = sum(bad(value) for value in face_scores)
    if not bad(score) and not models and not faces:
        return None
    values = [score, *model_scores.values(), *face_scores]
    kind = "not a finite number" if not all(map(math.isfinite, values)) else "not a probability from 0 to 1"
    faces_text = f"; {faces} of {len(face_scores)} faces" if faces else ""
    return f"a score that is {kind}: {score} ({', '.join(models) or 'each model finite'}{faces_text})"


def predict(
    args: argparse.Namespace,
    detectors: Ensemble | list[Member],
    device: torch.device,
    precision: str = "f32",
    share: tuple[int, int] = (0, 1),
    progress: Progress | None = None,
    calibration: EnsembleCalibration | None = None,
) -> tuple[dict[str, float], list[dict], list[dict]]:
    """Scores, failures and details of the videos of this process's `share` (rank, world size):
    every world-size-th video from the rank on. Each video's details line goes to `progress` as the
    video finishes; the videos it holds already (from the run it resumes) are not read again. A
    scored video's score is `calibration`'s probability of the ensemble's score, where given; its
    line records the settings it was scored with (`scoring`). `detectors` (inference/pipeline/detector.py;
    a list of loaded members: the winner's and the temporal recipes of them) decide how."""
    ensemble = as_ensemble(detectors, args)
    amp_dtype = autocast_dtype(device, precision, args.fp32)
    scoring = scoring_settings(args, device.type, precision)
    fast = fast_mode(args, device.type, precision)
    if fast and device.type != "cpu":
        logger.warning("%s", fast)
    elif fast:
        logger.info("--fast: %s", fast)
    rank, world = share
    videos = list_videos(args.test_dir, args.recursive)[rank::world]

    def name(path: Path) -> str:  # the submission's filename: the path under --test-dir
        return path.relative_to(args.test_dir).as_posix()

    logger.info("%d videos in %s, on %s", len(videos), args.test_dir, device)
    scores: dict[str, float] = {}
    errors: list[dict] = []
    details: list[dict] = []

    def finish(row: dict, path: Path | None = None, read_as: dict | None = None) -> None:
        """Keep a video's row and record it as it finishes, with the identity of the file it was
        read from (`read_as`, taken before decoding; else the file's now)."""
        scores[row["filename"]] = row["score"]
        if row["error"]:
            errors.append(row["error"])
        details.append(row)
        if path is not None and progress is not None:
            progress.add(row, read_as or video_identity(path))

    done = unchanged_rows(progress.path, progress.rows, {name(p): p for p in videos}) if progress is not None else {}
    for path in videos:
        if name(path) in done:
            finish(done[name(path)])
    if scores:
        logger.info("%d of these scored already (%s): not read again", len(scores), progress.path)
    videos_left = [path for path in videos if name(path) not in done]
    workers = args.workers if args.workers is not None else (1 if device.type == "cuda" else 0)
    reader = FaceReader(args, device, workers, ensemble.clip_windows, ensemble.sources)
    started = time.time()

    def fail(path: Path, stage: str, error: Exception) -> None:
        if isinstance(error, DetectionError):
            stage = "detect"
        reason = error.reason if isinstance(error, VideoReadError) else str(error)
        error_row = {"filename": name(path), "stage": stage, "reason": f"{type(error).__name__}: {reason}"}
        logger.warning("%s: %s failed (%s), scored %.2f", name(path), stage, reason, args.default_score)
        default = {"score": args.default_score, "ensemble_score": args.default_score, "calibrated": False}
        finish({"filename": name(path), **default, "error": error_row}, path)

    def classify(group: list[tuple[Path, VideoFaces]]) -> None:
        started_classify = time.perf_counter()
        try:
            results = score_videos([faces for _, faces in group], ensemble, args, device, amp_dtype)
        except Exception as error:  # every video gets a row, whatever happens to it
            for path, _ in group:
                fail(path, "classify", error)
            return
        seconds_per_face = (time.perf_counter() - started_classify) / max(1, sum(len(f.crops) for _, f in group))
        for (path, faces), (score, model_scores, face_scores) in zip(group, results, strict=True):
            problem = non_finite(score, model_scores, face_scores)
            if problem:
                fail(path, "classify", NonFiniteVideoScoreError(problem))
                continue
            seconds = {**faces.seconds, "classify": seconds_per_face * len(faces.crops)}
            finish(
                {
                    "filename": name(path),
                    "score": score if calibration is None else calibration.probability(score),
                    "ensemble_score": score,
                    "calibrated": calibration is not None,
                    "scoring": scoring,
                    **({"fast_mode": fast} if fast else {}),
                    "model_scores": model_scores,
                    "face_scores": face_scores,
                    **faces.details(),
                    "seconds": {key: round(value, 3) for key, value in seconds.items()},
                    "error": None,
                },
                path,
                faces.identity,
            )

    group: list[tuple[Path, VideoFaces]] = []
    completed = False
    try:
        bar = tqdm(
            reader.read_all(videos_left),
            total=len(videos),
            initial=len(videos) - len(videos_left),
            desc="videos",
            unit="video",
            disable=rank != 0,
        )
        for path, future in bar:
            try:
                group.append((path, future.result()))
            except Exception as error:  # every video gets a row, whatever happens to it
                fail(path, "decode", error)
            if group and sum(len(faces.crops) for _, faces in group) >= args.batch_size:
                classify(group)
                group = []
        if group:
            classify(group)
        completed = True
    finally:
        reader.close(wait=completed)  # interrupted: not waiting for the next video's decode
    logger.info("%d videos scored, %d failed, in %.1fs", len(scores) - len(errors), len(errors), time.time() - started)
    return scores, errors, details


def main(argv=None) -> int:
    """One process, or one of torchrun's: each rank scores its share of the videos on its own
    device, and rank 0 gathers every row and alone writes the files."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rank, world, device = init_distributed(args.device)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    precision = cpu_precision(args, device)
    check_progress_files(args.output, rank, world, args.resume)  # before the minutes that loading can take
    list_videos(args.test_dir, args.recursive)  # a missing or empty folder is said before loading too
    try:
        calibration = predict_options.chosen_calibration(args)
        if calibration is not None:  # before the minutes that loading and scoring take
            check_settings(
                calibration, scoring_settings(args, device.type, precision), args.ignore_calibration_settings
            )
        detectors = load_detectors(args, device, precision)
    except (CheckpointError, ValueError) as error:  # a wrong file or setting: one line, no traceback
        return cli.fail(error)
    settings = run_settings(args, device, precision, world, calibration)
    if args.resume and not progress_path(args.output, rank, world).exists():
        # a warning where a finished run's files are replaced; a first run (evaluate always resumes) is news only
        level = logging.WARNING if args.output.exists() else logging.INFO
        logger.log(level, nothing_to_resume(args.output, progress_path(args.output, rank, world)))
    with Progress(progress_path(args.output, rank, world), settings, args.resume) as progress:
        mine = predict(args, detectors, device, precision, (rank, world), progress, calibration)
    scores, errors, details = {}, [], []
    for part in all_gather_objects(mine):
        scores.update(part[0])
        errors.extend(part[1])
        details.extend(part[2])
    if is_main_process():
        errors_path = args.errors or args.output.parent / "errors.csv"
        details_path = args.output.parent / "details.jsonl"
        write_outputs(scores, errors, details, args.output, errors_path, details_path)
        for process in range(world):  # every file is whole: the progress of every process is done with
            try:
                progress_path(args.output, process, world).unlink(missing_ok=True)
            except OSError as error:
                logger.warning("%s; delete it before the next run to this output", cli.describe(error))
        logger.info(
            "wrote %s (%d rows), %s (%d errors) and %s",
            args.output,
            len(scores),
            errors_path,
            len(errors),
            details_path,
        )
    status = every_video_failed(scores, errors, args.errors or args.output.parent / "errors.csv", rank == 0)
    cleanup()
    return status


def every_video_failed(scores: dict[str, float], errors: list[dict], errors_path: Path, say: bool = True) -> int:
    """The exit status of a run whose files are written: 1 when every video failed (its submission
    holds nothing but --default-score), with one line naming errors.csv where `say`, else 0."""
    if not scores or len(errors) < len(scores):
        return 0
    if say:
        line = f"error: {errors_path}: all {len(scores)} videos failed, none was scored (this file says why)"
        print(line, file=sys.stderr)
    return 1
