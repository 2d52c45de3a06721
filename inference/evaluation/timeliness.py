"""How early can a video be judged? Score each video on its first k sampled frames only.

    python -m inference.evaluation.timeliness --test-dir DIR --labels labels.csv --models CKPT [...] --out DIR

Each video is read as inference.predict reads it (32 evenly spaced frames, MTCNN, every face
scored by every model), then judged again on the faces of its first k sampled frames, for
k = 1, 2, 4, 8, 16 and 32 (`--steps`): per model the frames aggregated (`confident`), the models
averaged by weight; a video with no face yet gets --default-score. A temporal model counts the
clips whose last frame has been seen (inference/pipeline/clips.py). For each k it reports the log
loss, ROC AUC and accuracy over the videos and the seconds of video seen (up to the end of the
k-th sampled frame, averaged over the videos); per video, the first k from which its decision
(FAKE above 0.5) is right and stays right (`first_right_frames`, null if it never settles).
Writes timeliness.json and timeliness.png (AUC and log loss against seconds seen) into --out.

An --ensemble file with a `calibration:` block has it applied as inference.predict does: each k's
score is the calibrated probability of the ensemble's score (kept per video as `ensemble_scores`),
and the metrics and decisions are taken on it (AUC is unchanged: calibration keeps the order).
timeliness.json names the calibration applied (`calibration`, null without). `--uncalibrated`
ignores it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common import cli
from common.io_utils import atomic_path, write_json_atomic
from common.video_io import VideoReadError, probe_video
from inference.detectors.options import as_ensemble, load_detectors
from inference.models.ensemble import Member
from inference.models.model_options import add_model_arguments, cpu_precision
from inference.pipeline.aggregate import STRATEGIES
from inference.pipeline.clips import extract_clips
from inference.pipeline.detector import PROJECT_FACES, Ensemble, Run, faces_of
from inference.pipeline.faces import DetectionError, extract_faces, inference_detector
from inference.prediction.predict_folder import list_videos
from inference.prediction.predict_options import add_calibration_argument, chosen_calibration
from inference.scoring.metrics import score
from inference.scoring.submission_scoring import read_labels
from preprocess.faces.face_detector import ORIGINAL_SCALE, default_device, scale_argument

logger = logging.getLogger("inference.evaluation.timeliness")

STEPS = (1, 2, 4, 8, 16, 32)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m inference.evaluation.timeliness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--test-dir", type=Path, required=True, help="folder of videos")
    parser.add_argument("--labels", type=Path, required=True, help="labels.csv, metadata.json or a DFDC root")
    parser.add_argument("--out", type=Path, required=True, help="folder for timeliness.json and timeliness.png")
    add_model_arguments(parser)
    add_calibration_argument(parser)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS), help="numbers of frames k (1 2 4 ... 32)")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video (32)")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="confident", help="frame aggregation")
    parser.add_argument("--detector-scale", type=scale_argument, default=ORIGINAL_SCALE, help="MTCNN scale (0.5)")
    parser.add_argument("--no-recall-boost", action="store_true", help="no second try on frames without a face")
    parser.add_argument("--default-score", type=float, default=0.5, help="score of a video with no face yet (0.5)")
    args = parser.parse_args(argv)
    if not args.models and not args.ensemble:
        parser.error("give --models and/or --ensemble")
    args.fast = args.cpu_bf16 = args.fp32 = False
    return args


def scores_by_prefix(
    per_model: list[tuple[np.ndarray, np.ndarray]],
    weights: list[float],
    cutoffs: list[int],
    strategy: str,
    default: float,
    aggregates: list | None = None,
) -> list[float]:
    """The video's score on what each model had seen by each cutoff frame: per model, its
    probabilities and the frame each one became known at (a face's frame, a clip's last frame);
    a model with nothing yet counts as `default`. `aggregates`: each model's own (its detector's),
    else `strategy`'s for all."""
    aggregates = aggregates or [STRATEGIES[strategy]] * len(per_model)
    scores = []
    for cutoff in cutoffs:
        per_member = []
        for (probabilities, frames), aggregate in zip(per_model, aggregates, strict=True):
            seen = np.asarray(frames) <= cutoff
            per_member.append(aggregate(probabilities[seen]) if seen.any() else None)
        if all(score is None for score in per_member):
            scores.append(default)
            continue
        scores.append(float(np.average([default if s is None else s for s in per_member], weights=weights)))
    return scores


def first_right_step(scores: list[float], label: int, steps: list[int], threshold: float = 0.5) -> int | None:
    """The first k from which the decision is right at every later k too (None if it never settles)."""
    right = [(s > threshold) == bool(label) for s in scores]
    for position in range(len(steps)):
        if all(right[position:]):
            return steps[position]
    return None


def video_row(
    filename: str,
    label: int,
    ensemble_scores: list[float],
    judged: list[bool],
    seconds: list[float],
    steps: list[int],
    calibration=None,
) -> dict:
    """A video's line of timeliness.json: each k's score, the ensemble's score (`ensemble_scores`)
    and the first settled k. Where `calibration` applies, a k's score is its probability of the
    ensemble's; a k not `judged` (nothing seen yet, or the video failed) keeps the default score
    uncalibrated, as a failed video does in inference.predict."""
    scores = [
        float(calibration.probability(raw)) if calibration is not None and seen else raw
        for raw, seen in zip(ensemble_scores, judged, strict=True)
    ]
    return {
        "filename": filename,
        "label": label,
        "scores": [round(s, 6) for s in scores],
        "ensemble_scores": [round(s, 6) for s in ensemble_scores],
        "seconds_seen": seconds,
        "first_right_frames": first_right_step(scores, label, steps),
    }


def report(rows: list[dict], steps: list[int]) -> dict:
    """Metrics per k over the videos, and each video's first settled k."""
    labels = np.asarray([row["label"] for row in rows])
    per_step = []
    for position, k in enumerate(steps):
        scores = np.asarray([row["scores"][position] for row in rows])
        metrics = score(labels, scores)
        seconds = [row["seconds_seen"][position] for row in rows]
        per_step.append(
            {
                "frames": k,
                "seconds_seen": round(float(np.mean(seconds)), 3),
                "log_loss": metrics["log_loss"],
                "roc_auc": metrics["roc_auc"],
                "accuracy": metrics["accuracy"],
            }
        )
    return {"videos": len(rows), "steps": per_step, "per_video": rows}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    seconds = [step["seconds_seen"] for step in steps]
    figure, left = plt.subplots(figsize=(6, 3.4), dpi=100)
    left.plot(seconds, [step["log_loss"] for step in steps], marker="o", color="#c0392b", label="log loss")
    left.set(xlabel="seconds of video seen (mean)", ylabel="log loss")
    right = left.twinx()
    auc = [step["roc_auc"] if step["roc_auc"] is not None else np.nan for step in steps]
    right.plot(seconds, auc, marker="s", color="#2471a3", label="ROC AUC")
    right.set(ylabel="ROC AUC", ylim=(0.0, 1.02))
    for step, x in zip(steps, seconds, strict=True):
        left.annotate(
            f"k={step['frames']}", (x, step["log_loss"]), fontsize=7, xytext=(3, 4), textcoords="offset points"
        )
    lines = left.get_lines()[:1] + right.get_lines()[:1]
    left.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    left.set_title(f"Judging early: {result['videos']} videos")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


def judge_video(path: Path, detector, members: Ensemble | list[Member], args, device: torch.device) -> tuple:
    """Each k's score, whether any model had seen anything by then (else the score is the default),
    and seconds of video seen (the default score where the video fails). `members`: the detectors
    (inference/pipeline/detector.py; a list of loaded members: the winner's and the temporal
    recipes of them); each unit (a face, a clip) counts from the frame it is known at."""
    ensemble = as_ensemble(members, args)
    first, *others = ensemble.sources
    try:
        if first == PROJECT_FACES:
            faces = extract_faces(path, detector, args.frames, recall=not args.no_recall_boost)
        else:
            faces = first.read(path, detector, args)
        for source in others:
            faces.views[source] = source.read(path, detector, args)
    except (VideoReadError, DetectionError) as error:
        logger.warning("%s: %s; scored %.2f at every k", path.name, error, args.default_score)
        return [args.default_score] * len(args.steps), [False] * len(args.steps), [0.0] * len(args.steps)
    info = probe_video(path)
    for window in sorted(ensemble.clip_windows):  # a temporal model's clips, each known at its last frame
        faces.clips[window] = extract_clips(path, detector, window, args.frames, not args.no_recall_boost)
    per_model, aggregates = [], []
    for d, [probabilities] in zip(ensemble.detectors, ensemble.probabilities([faces], Run(device)), strict=True):
        read = faces_of(faces, d.source)
        for model, p in zip(d.models, probabilities, strict=True):
            per_model.append((model, p, np.asarray(d.unit_frames(read, model))))
            aggregates.append(d.aggregate)
    order = {id(model): position for position, model in enumerate(ensemble.models)}
    ranked = sorted(range(len(per_model)), key=lambda i: order[id(per_model[i][0])])
    weights = [per_model[i][0].weight for i in ranked]
    aggregates = [aggregates[i] for i in ranked]
    per_model = [per_model[i][1:] for i in ranked]
    sampled = faces.frame_indices
    cutoffs = [sampled[min(k, len(sampled)) - 1] for k in args.steps]
    scores = scores_by_prefix(per_model, weights, cutoffs, args.strategy, args.default_score, aggregates)
    judged = [any((frames <= cutoff).any() for _, frames in per_model) for cutoff in cutoffs]
    fps = info.fps or 30.0
    # seen after the k-th sampled frame: up to the end of that frame
    seconds = [(sampled[min(k, len(sampled)) - 1] + 1) / fps for k in args.steps]
    return scores, judged, [round(s, 3) for s in seconds]


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.steps = sorted(set(args.steps))
    device = torch.device(args.device) if args.device else default_device()
    labels = read_labels(args.labels)
    videos = [path for path in list_videos(args.test_dir) if path.name in labels]
    if not videos:
        raise cli.InputError(f"{args.labels}: labels none of the videos of {args.test_dir}")
    calibration = chosen_calibration(args)
    members = load_detectors(args, device, cpu_precision(args, device))
    detector = inference_detector(args.detector_scale, device)
    rows = []
    for path in tqdm(videos, desc="videos", unit="video"):
        scores, judged, seconds = judge_video(path, detector, members, args, device)
        rows.append(video_row(path.name, labels[path.name][0], scores, judged, seconds, args.steps, calibration))
    result = {**report(rows, args.steps), "calibration": None if calibration is None else calibration.summary()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "timeliness.json", result)
    plot(result, args.out / "timeliness.png")
    for step in result["steps"]:
        auc = "-" if step["roc_auc"] is None else f"{step['roc_auc']:.3f}"
        logger.info(
            "k=%2d (%.1f s): log loss %.4f, AUC %s, accuracy %.3f",
            step["frames"],
            step["seconds_seen"],
            step["log_loss"],
            auc,
            step["accuracy"],
        )
    logger.info("wrote %s and timeliness.png", args.out / "timeliness.json")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
