"""inference.predict's command-line options: what to score, how, and where the files go."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from inference.distortions.frame_perturbation import NAMES as PERTURBATION_NAMES
from inference.distortions.frame_perturbation import perturb_argument
from inference.models.ensemble_calibration import CalibrationFileError
from inference.models.ensemble_file import ensemble_calibration
from inference.models.model_options import add_media_arguments, add_model_arguments, frames_argument, load_calibration
from inference.pipeline.aggregate import STRATEGIES
from preprocess.faces.face_detector import ORIGINAL_SCALE, scale_argument

logger = logging.getLogger("inference.prediction.predict_options")


def add_calibration_argument(parser: argparse.ArgumentParser) -> None:
    """--uncalibrated (what `chosen_calibration` reads), for predict and timeliness."""
    parser.add_argument(
        "--uncalibrated",
        action="store_true",
        help="ignore the ensemble file's calibration: the submission holds the ensemble's raw scores (what "
        "inference.calibrate fits on)",
    )


def chosen_calibration(args: argparse.Namespace):
    """The calibration of --ensemble's file that applies (an EnsembleCalibration), or None: none
    stored, or --uncalibrated (said at INFO when the file has one, so that it is not ignored unseen)."""
    if not args.uncalibrated:
        return load_calibration(args)
    try:
        stored = ensemble_calibration(args.ensemble) is not None if args.ensemble else False
    except CalibrationFileError:  # a block that could not be applied is ignored all the same
        stored = True
    if stored:
        logger.info("--uncalibrated: ignoring the calibration of %s, scores are the ensemble's raw ones", args.ensemble)
    return None


def parse_args(argv=None, description: str | None = None) -> argparse.Namespace:
    """inference.predict's options (its module docstring is the description)."""
    parser = argparse.ArgumentParser(
        prog="python -m inference.predict",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--test-dir", type=Path, required=True, help="folder of videos to score")
    add_model_arguments(parser)
    add_calibration_argument(parser)
    parser.add_argument(
        "--ignore-calibration-settings",
        action="store_true",
        help="apply the ensemble file's calibration even to scores made with other settings than its own "
        "(detector scale, frames, strategy, per-person, TTA, recall boost, fast mode, precision): refused by "
        "default, one line naming each difference; with this a warning names them",
    )
    add_media_arguments(parser)
    parser.add_argument("--output", type=Path, default=Path("submission.csv"), help="default: submission.csv")
    parser.add_argument("--errors", type=Path, help="default: errors.csv next to the output")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from the progress file an interrupted run to the same output left (OUTPUT.progress.jsonl; "
        "same settings only): the videos it holds are not read again",
    )
    parser.add_argument("--frames", type=frames_argument, default=32, help="frames sampled per video (default 32)")
    parser.add_argument(
        "--detector-scale",
        type=scale_argument,
        default=ORIGINAL_SCALE,
        help="MTCNN scale: a number above 0, at most 4 (default 0.5, the original's), or 'rule' to scale by resolution "
        "(finds the faces of low-resolution video that half size loses)",
    )
    parser.add_argument(
        "--no-recall-boost",
        action="store_true",
        help="no second try on frames where MTCNN finds no face (the original's behaviour; by default such a "
        "frame is tried again at twice the scale (up to 2x; 1x after a first try at 2x) and, if dark, "
        "brightened, and a person seen in the frames before and after gets an interpolated box)",
    )
    parser.add_argument(
        "--strategy",
        choices=sorted(STRATEGIES),
        default="confident",
        help="frame aggregation per model (default: confident)",
    )
    parser.add_argument(
        "--per-person",
        action="store_true",
        help="aggregate each person (faces linked across frames) and take the most fake",
    )
    parser.add_argument("--tta", action="store_true", help="average each face with its mirror image")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="faster, scores close to the default's but not equal (within 0.035 on the sample clips and their 1080p "
        "copies with three very confident models, but for one video on the confident strategy's edge: docs/speed.md "
        "'Fast mode'): the sampled frames decoded with the frames no other needs skipped (the same pixels); on a "
        "CPU, MTCNN's image pyramid on every fourth sampled frame only (as the default runs it), the frames between "
        "searched where the faces of the frames around them were (MTCNN's last two networks on those boxes; the "
        "full pyramid where a face is lost); a frame without a face is still retried the original's way; the "
        "classifiers in bf16 where it was measured faster than fp32 on this CPU (once, cached; --fp32 keeps fp32). "
        "On CUDA only the decoding changes, and the scores are the default's",
    )
    parser.add_argument("--default-score", type=float, default=0.5, help="score of a video that fails (0.5)")
    parser.add_argument(
        "--fp32", action="store_true", help="the classifiers in fp32 everywhere: no fp16 autocast on CUDA, no bf16"
    )
    parser.add_argument(
        "--cpu-bf16",
        action="store_true",
        help="bf16 on the CPU, where the CPU computes it natively (AVX-512 BF16 or AMX); elsewhere it is emulated "
        "and slower, so fp32 runs and a warning says so. About a third faster to classify; scores move (by up "
        "to 0.010 with a sharp model on the sample clips, docs/speed.md 'Fast mode')",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=64,
        help="faces per forward pass; faces of consecutive videos are classified together until a batch is full",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads decoding and detecting the next videos while one is classified (default: 1 on CUDA, 0 on "
        "the CPU, where they would compete with the classifier for the same cores)",
    )
    parser.add_argument("--video-backend", choices=["opencv", "pyav"], default="opencv")
    parser.add_argument(
        "--faces-are-cropped",
        action="store_true",
        help="the photos (or videos) are face crops already, as in the 140k faces set: no detection, each whole "
        "frame is scored",
    )
    parser.add_argument(
        "--recursive",
        action="store_true",
        help="also the files of --test-dir's subfolders; filenames are then paths under it (real/x.jpg)",
    )
    parser.add_argument(
        "--perturb",
        type=perturb_argument,
        metavar="NAME:LEVEL",
        help="distort each video's sampled frames before detection (robustness tests; see "
        f"inference/distortions/frame_perturbation.py): NAME one of {', '.join(PERTURBATION_NAMES)}, LEVEL 1 to 5",
    )
    parser.add_argument(
        "--perturb-seed",
        type=int,
        default=0,
        help="base seed of --perturb (default 0); each video's seed adds its filename under --test-dir",
    )
    args = parser.parse_args(argv)
    if not args.models and not args.ensemble:
        parser.error("give --models and/or --ensemble")
    if args.fp32 and args.cpu_bf16:
        parser.error("--fp32 and --cpu-bf16 ask for different precisions: give one")
    if not 0.0 <= args.default_score <= 1.0:  # also refuses nan, which would be written as a score
        parser.error(f"--default-score must be a probability from 0 to 1, got {args.default_score}")
    return args
