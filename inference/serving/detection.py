"""Is it a deepfake? Score videos and photos one by one and say so.

    python -m inference.detect clip.mp4 photo.jpg folder/ [--models CKPT ... | --ensemble NAME|YAML] [--json]

PATH is a video, a photo (jpg, png, webp, bmp) or a folder of them. Each file gets one line on
standard output: FAKE or REAL, the probability that it is fake, how many faces and people it was
judged on, and what decided the verdict; a file that cannot be read, or shows no face, gets
`error: FILE: PROBLEM` instead. With --json each file gets one JSON document per line instead:
the probability and verdict, each model's score, each person's score and face track (boxes by
frame), each sampled frame's probability, the aggregation, frames with and without a face, the
seconds spent, and the models; or the error. --explain DIR adds Grad-CAM heatmaps of the most
suspicious faces, the frame they are in and a per-frame probability plot for each file, and one
report.html with everything embedded (see inference/serving/explain.py for what the heatmaps mean). An
explanation that cannot be made (a folder that cannot be written, a model Grad-CAM cannot read)
costs only itself: the verdict stands, the document's `explanation` is {"error": REASON} and a
warning is logged; a report.html that cannot be written is logged as an error. Neither changes
the exit status.

A video is judged as inference.predict judges it: 32 evenly spaced frames, MTCNN, every face
scored by every model, the frames aggregated per model (`confident` by default) and the models
averaged by weight. A photo is a video of one frame, with the same detection and crop (the
confident strategy is then the face's own probability). Faces are looked for at the scale the
models were made for: half size for the original's checkpoints (`--ensemble original`, or an
ensemble file's `detector_scale: 0.5`), as its code did; for other checkpoints a scale set by the
resolution (`--detector-scale rule`: 0.5 up to DFDC's 1920 px, as the original, and larger for
small media and photos); with the recall boost on. With a calibrated --ensemble, each of these
scoring options that is not given is the calibration's instead (the settings its scores were made
with: predict's default scale is 0.5, not rule), and one that is given and differs from it is
warned of, naming each difference (inference/serving/detect_settings.py).

Verdicts: FAKE when the probability is above --threshold (0.5). An --ensemble file calibrated by
`python -m inference.calibrate` carries a `calibration:` block: the probability is then calibrated
(people and frames too; each model's score stays raw, and the document's `score` is the ensemble's
raw score), the verdict is taken at an operating point it stores (--operating-point fpr=0.01; by
default its 1% point), FAKE when the raw score is above that point's threshold, and the line says
how many of its reference real videos score as high (`real_quantile`; the line says whether they are
training's out-of-fold videos or a labelled held-out set). --threshold with a
calibration decides on the calibrated probability instead; --uncalibrated ignores the calibration.

Models: --models, or --ensemble (a YAML file, or `original`, the winning seven B7 once fetched
by `python -m inference.weights fetch original`). Without either, the newest run's `_best`
checkpoints in ./weights, else in ./work/weights (where ./run_all.sh puts the demo's), else the
fetched `original` ensemble; the log says which. Where ./work/ensemble.yaml (./run_all.sh's
calibrated ensemble) lists exactly those checkpoints, it is used as --ensemble, calibration and
all; where it lists others (an older calibration) or its calibration cannot be used (a checkpoint
retrained since), the checkpoints are, and a warning says why.
A temporal checkpoint counts with its clips' scores (inference/pipeline/clips.py); people, per-frame
probabilities and heatmaps come from the frame models of the ensemble.

A model that gives a file a score that is not a finite number (NaN) makes that file an error
(stage `classify`, naming the model), never a verdict; the JSON is strict (no NaN or Infinity).

Exit status: 0 when every file was judged, 1 when some could not be (their errors are in the
output), 2 on a usage problem (no models, an unreadable or malformed checkpoint or calibration, an
operating point the calibration does not store: one line naming the file and what is wrong).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

import torch

from common import cli
from common.cli import InputError
from common.records import MEDIA_SUFFIXES, media_files
from common.video_io import VideoReadError
from inference.detectors.options import as_ensemble, load_detectors
from inference.models.ensemble import Member, check_finite_scores
from inference.models.ensemble_file import ensemble_calibration, ensemble_members
from inference.models.model_options import (
    add_media_arguments,
    add_model_arguments,
    autocast_dtype,
    media_limits,
)
from inference.pipeline.clips import extract_clips
from inference.pipeline.detector import PROJECT_FACES, Ensemble, Run, read_views
from inference.pipeline.faces import DetectionError, VideoFaces, extract_faces, inference_detector
from inference.scoring.scoring_settings import FAST_ON_CUDA
from inference.serving.detect_settings import add_scoring_arguments, resolve_scoring
from inference.serving.explain import explain, write_report
from inference.serving.verdict import failure, judgement, output_line, reported
from inference.serving.verdict_options import UNREADABLE_BLOCK, VerdictRule, add_verdict_arguments, verdict_rule
from preprocess.faces.face_detector import default_device

logger = logging.getLogger("inference.detect")

MODEL_FOLDERS = (Path("weights"), Path("work/weights"))
RUN_ALL_ENSEMBLE = Path("work/ensemble.yaml")  # the newest run's checkpoints, calibrated by ./run_all.sh


class NoModelsError(InputError, ValueError):
    pass


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.detect", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="videos, photos or folders of them")
    add_model_arguments(parser)
    add_media_arguments(parser)
    add_verdict_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON document per file (a line each)")
    add_scoring_arguments(parser)
    parser.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="write into DIR, per file, Grad-CAM heatmaps of the most suspicious faces, the frame of the most "
        "suspicious one with its faces coloured by score and a per-frame probability plot, and report.html",
    )
    args = parser.parse_args(argv)
    if args.fp32 and args.cpu_bf16:
        parser.error("--fp32 and --cpu-bf16 ask for different precisions: give one")
    return args


def files_to_judge(paths: list[Path]) -> list[Path]:
    """The files to judge: each file named, and the videos and photos of each folder named (sorted)."""
    files = []
    for path in paths:
        if path.is_dir():
            found = media_files(path, recursive=False)
            if not found:
                raise InputError(f"{path}: no videos or photos ({', '.join(sorted(MEDIA_SUFFIXES))}) in this folder")
            files += found
        else:
            files.append(path)  # a missing file is reported as that file's error
    return files


def explanation_folders(files: list[Path]) -> list[str]:
    """A folder name per file for --explain: its name, numbered where two files share one."""
    names, seen = [], {}
    for path in files:
        seen[path.name] = seen.get(path.name, 0) + 1
        names.append(path.name if seen[path.name] == 1 else f"{path.name}-{seen[path.name]}")
    return names


def newest_run_checkpoints(folder: Path) -> list[Path]:
    """The `_best` checkpoints of the run name of the newest one in `folder` (NAME_FOLD_SEED_best.pt)."""
    best = sorted(folder.glob("*_best.pt"), key=lambda p: p.stat().st_mtime)
    if not best:
        return []
    run_name = re.sub(r"_\d+_\d+_best\.pt$", "", best[-1].name)
    return sorted(p for p in best if re.fullmatch(rf"{re.escape(run_name)}_\d+_\d+_best\.pt", p.name))


def fitted_ensemble(checkpoints: list[Path], path: Path = RUN_ALL_ENSEMBLE) -> Path | None:
    """`path` (./run_all.sh's calibrated ensemble) when it lists exactly `checkpoints` (the same files)
    and its calibration can be used, else None, with a warning saying why where the file exists (an
    older calibration, or one whose checkpoints were retrained since, is not used)."""
    if not path.is_file():
        return None
    try:
        members = sorted(entry["path"].resolve() for entry in ensemble_members(path))
        same = members == sorted(p.resolve() for p in checkpoints)
        if same:
            ensemble_calibration(path)  # refused (stale, malformed): the checkpoints, uncalibrated, instead
    except (ValueError, *UNREADABLE_BLOCK) as error:
        logger.warning("%s was not used: %s", path, cli.describe(error).removeprefix(f"{path}: "))
        return None
    if same:
        return path
    logger.warning(
        "%s was not used: its members (%s) differ from the newest run's checkpoints (%s); calibrate them again "
        "with python -m inference.calibrate, or give --ensemble %s",
        path,
        ", ".join(str(m) for m in members),
        ", ".join(str(p) for p in checkpoints) or "none",
        path,
    )
    return None


def choose_models(args: argparse.Namespace) -> None:
    """Fill in args.models (or args.ensemble) when neither --models nor --ensemble is given, and say which."""
    from inference.models.named_weights import ENSEMBLES, default_weights_dir

    if args.models or args.ensemble:
        return
    found = next((checkpoints for folder in MODEL_FOLDERS if (checkpoints := newest_run_checkpoints(folder))), [])
    ensemble = fitted_ensemble(found)
    if ensemble is not None:
        logger.info(
            "no --models given: using the calibrated ensemble %s (its members %s)",
            ensemble,
            ", ".join(str(p) for p in found),
        )
        args.ensemble = str(ensemble)
        return
    if found:
        logger.info("no --models given: using %s", ", ".join(str(p) for p in found))
        args.models = found
        return
    original = default_weights_dir()
    if all((original / f.name).is_file() for f in ENSEMBLES["original"].files):
        logger.info("no --models given: using the original ensemble in %s", original)
        args.ensemble = "original"
        return
    raise NoModelsError(
        "no models: give --models CKPT [CKPT ...] or --ensemble FILE.yaml; or fetch the winning solution's "
        "weights with `python -m inference.weights fetch original`; or train some (./run_all.sh writes the "
        "demo's to work/weights and their calibrated ensemble to work/ensemble.yaml, inference.detect finds them)"
    )


def examine(
    path: Path,
    detector,
    members: Ensemble | list[Member],
    args,
    device: torch.device,
    amp_dtype,
    rule: VerdictRule,
    folder_name: str | None = None,
) -> dict:
    """The JSON document of one file, its error included when it cannot be judged, its verdict
    decided by `rule`; with --explain, its heatmaps, frame and plot written and named in it.
    `members` are the detectors (inference/pipeline/detector.py; a list of loaded members: the
    winner's and the temporal recipes of them), `detector` the run's MTCNN."""
    started = time.perf_counter()
    ensemble = as_ensemble(members, args)
    first, *others = ensemble.sources
    try:
        if not path.exists():
            raise VideoReadError(path, "no such file")
        if first == PROJECT_FACES:
            recall, limits = not args.no_recall_boost, media_limits(args)
            faces = extract_faces(path, detector, args.frames, recall=recall, limits=limits, sparse=args.fast)
        else:
            faces = first.read(path, detector, args)
        read_views(faces, others, path, detector, args)
    except (VideoReadError, DetectionError) as error:
        return failure(path, "detect" if isinstance(error, DetectionError) else "decode", error)
    classify_started = time.perf_counter()
    face_view = ensemble.face_view()
    run = Run.from_args(args, device, amp_dtype)  # scored as predict scores: per person, default score
    try:
        for window in sorted(ensemble.clip_windows):
            faces.clips[window] = extract_clips(
                path, detector, window, args.frames, not args.no_recall_boost, limits=media_limits(args)
            )
        [scored] = ensemble.score([faces], run, check=check_finite_scores)
    except RuntimeError as error:  # NonFiniteScoreError among them: a NaN is no probability
        return failure(path, "classify", error)
    document = judgement(
        path,
        faces,
        scored,
        face_view,
        rule.threshold,
        args.per_person,
        calibration=rule.calibration,
        operating_point=rule.operating_point,
    )
    seconds = {
        **faces.seconds,
        "classify": time.perf_counter() - classify_started,
        "total": time.perf_counter() - started,
    }
    document["seconds"] = {key: round(value, 3) for key, value in seconds.items()}
    if args.explain and face_view is not None:  # heatmaps, frame and plot of the face view's faces
        face_probability = reported(scored.face_probabilities, rule.calibration)
        document["explanation"] = explanation(
            document, faces, face_probability, face_view, device, args.explain, folder_name
        )
    return document


def explanation(document: dict, faces: VideoFaces, face_probability, face_view, device, out_dir, folder_name) -> dict:
    """What `explain` wrote for the file, or {"error": why} when it failed: the verdict stands
    without its explanation (a folder that cannot be written, a model Grad-CAM cannot read)."""
    try:
        return explain(document, faces, face_probability, face_view, device, out_dir, folder_name)
    except Exception as error:
        if cli.debugging():
            raise
        reason = cli.describe(error)
        logger.warning("%s: no explanation: %s", document["file"], reason)
        return {"error": reason}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    device = torch.device(args.device) if args.device else default_device()
    try:
        files = files_to_judge(args.paths)
        choose_models(args)
        rule = verdict_rule(args)
        precision = resolve_scoring(args, rule.calibration, device)  # the calibration's settings, where not given
        members = load_detectors(args, device, precision)
    except cli.BAD_INPUT as error:
        return cli.fail(error)
    amp_dtype = autocast_dtype(device, precision, args.fp32)
    if args.fast and device.type != "cpu":
        logger.warning("%s", FAST_ON_CUDA)
    detector = inference_detector(args.detector_scale, device, args.fast)
    failed, documents = 0, []
    for path, folder_name in zip(files, explanation_folders(files), strict=True):
        try:
            document = examine(path, detector, members, args, device, amp_dtype, rule, folder_name)
        except Exception as error:  # one line (or document) per file, whatever happens to it
            if cli.debugging():
                raise
            document = failure(path, "judge", RuntimeError(f"{type(error).__name__}: {error}"))
        document["detector_scale"] = {"value": args.detector_scale, "source": args.detector_scale_source}
        line = output_line(document, args.json)
        if line is None:  # a stray NaN or infinity: no verdict rests on one
            document = failure(path, "judge", ValueError("a non-finite number in the result"))
            line = output_line(document, args.json)
        failed += document["error"] is not None
        documents.append(document)
        print(line, flush=True)
    if args.explain:
        try:
            write_report(documents, args.explain / "report.html")
        except OSError as error:  # the verdicts are printed and stand; only the report is lost
            if cli.debugging():
                raise
            logger.error("no report: %s", cli.describe(error))
    return 1 if failed else 0
