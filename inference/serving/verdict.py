"""The judgement of one file as inference.detect (and the page) gives it: the JSON document (the
probability and verdict, each model's score, each person's score and track, each sampled frame's
probability, what was found and what was decoded), a failure's document, and the line a person
reads.

With an ensemble's calibration (inference/models/ensemble_calibration.py) every probability in the
document (the file's, each person's, each face's and frame's) is calibrated, so that all read on
one scale; `score` and each model's `score` stay the raw ensemble's. At an operating point the
verdict is FAKE when the raw score is above the point's threshold, and `threshold` is where that
threshold lies on the calibrated probabilities shown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.video_io import VideoReadError, is_image
from inference.models.ensemble_calibration import EnsembleCalibration, OperatingPoint
from inference.pipeline.detector import Detector, VideoScore, weighted_mean
from inference.pipeline.faces import VideoFaces
from preprocess.faces.tracks import link_people


def _rounded(values, digits: int = 4) -> list:
    return [round(float(v), digits) for v in values]


def reported(probabilities, calibration: EnsembleCalibration | None):
    """Raw ensemble probabilities as a person reads them: calibrated where there is a calibration."""
    return probabilities if calibration is None else calibration.probability(probabilities)


def judgement(
    path: Path,
    faces: VideoFaces,
    scored: VideoScore,
    face_view: Detector | None,
    threshold: float,
    by_person: bool = False,
    calibration: EnsembleCalibration | None = None,
    operating_point: OperatingPoint | None = None,
) -> dict:
    """The JSON document of one judged file: probability and verdict, each model's score, each
    person's score and track, each sampled frame's probability (its most fake face).

    `scored` is the ensemble's score of the file (inference/pipeline/detector.py: the weighted mean
    of every model's score, each model's score as its detector makes it, per person with
    --per-person): the probability, the verdict and the models' list come from it, as predict's
    score does. People and frames are shown from `face_view`, the detector whose models score the
    faces of the file's own read (none: null probabilities): a person's probability is the face
    view's models' aggregates of that person's faces, weighted.

    `calibration` calibrates the probabilities; `operating_point` (one of its points) decides the
    verdict on the raw score instead of `threshold` deciding it on the probability."""
    views = [(model, units) for detector, model, units, _ in scored.per_model if detector is face_view]
    people = np.asarray([person for frame in link_people(faces.boxes_by_frame()) for person in frame])
    face_probability = (
        reported(scored.face_probabilities, calibration) if views and len(people) else [None] * len(people)
    )
    weights, persons = [model.weight for model, _ in views], []
    for person in np.unique(people):
        mine = np.flatnonzero(people == person)
        track = [
            {
                "frame": faces.face_frames[i],
                "box": _rounded(faces.boxes[i], 1),
                "probability": None if face_probability[i] is None else _rounded([face_probability[i]])[0],
            }
            for i in mine
        ]
        aggregates = [face_view.aggregate(units[mine]) for _, units in views]
        raw = float(weighted_mean(aggregates, weights)) if views else None
        persons.append(
            {
                "person": int(person),
                "probability": None if raw is None else round(float(reported(raw, calibration)), 4),
                "faces": len(mine),
                "track": track,
            }
        )
    raw_score = scored.score
    probability = float(reported(raw_score, calibration))
    if operating_point is not None:
        verdict = "FAKE" if raw_score > operating_point.score else "REAL"
        verdict_text = f"{verdict} at {operating_point.describe()}"
        threshold = round(operating_point.probability, 4)  # where the point lies on the probabilities shown
    else:
        verdict = "FAKE" if probability > threshold else "REAL"
        verdict_text = f"FAKE above {threshold:g}" if verdict == "FAKE" else f"REAL at or below {threshold:g}"
    quantile = calibration.real_quantile(raw_score) if calibration is not None else None
    per_frame = []
    for index in faces.frame_indices:
        mine = [face_probability[i] for i, frame in enumerate(faces.face_frames) if frame == index]
        known = [p for p in mine if p is not None]
        per_frame.append(
            {"frame": index, "faces": len(mine), "probability": round(float(max(known)), 4) if known else None}
        )
    details = faces.details()
    return {
        "file": str(path),
        "kind": "photo" if is_image(path) else "video",
        "verdict": verdict,
        "verdict_text": verdict_text,
        "probability": round(probability, 4),
        "score": round(raw_score, 4),
        "calibrated": calibration is not None,
        "threshold": threshold,
        "operating_point": None
        if operating_point is None
        else {
            "fpr": operating_point.fpr,
            "score_threshold": operating_point.score,
            "probability_threshold": round(operating_point.probability, 4),
            "reals": operating_point.reals,
        },
        "real_quantile": None if quantile is None else round(quantile, 6),
        "real_videos": None if calibration is None else len(calibration.real_scores),
        "real_videos_from": None if calibration is None else calibration.reals_origin(),
        "calibration_forced": None if calibration is None else calibration.forced,
        "calibration": None if calibration is None else calibration.summary(),
        "aggregation": {"strategy": _strategy(scored, face_view), "per_person": by_person},
        "models": [_model_entry(detector, model, units, score) for detector, model, units, score in scored.per_model],
        "people": persons,
        "frames": {
            "sampled": details["frames_sampled"],
            "with_face": details["frames_with_face"],
            "without_face": details["frames_sampled"] - details["frames_with_face"],
            "requested": details["frames_requested"],
            "decoded": details["frames_decoded"],
        },
        "partial_reason": details["partial_reason"],
        "faces": len(faces.crops),
        "boxes_found": details["boxes_found"],
        "per_frame": per_frame,
        "error": None,
    }


def _strategy(scored: VideoScore, face_view: Detector | None) -> str:
    """How the faces were aggregated: the face view's way, else the first model's detector's."""
    if face_view is not None:
        return face_view.aggregation
    return scored.per_model[0][0].aggregation if scored.per_model else "mean"


def _model_entry(detector: Detector, model, units: np.ndarray, score: float) -> dict:
    entry = {
        "name": model.name,
        "detector": detector.name,
        "encoder": getattr(model, "encoder", None),
        "input_size": getattr(model, "input_size", None),
        "weight": model.weight,
        "score": round(float(score), 4),
    }
    if not detector.scores_faces:
        entry["clips"] = len(units)  # a temporal model's units are clips of face tracks
    return entry


def failure(path: Path, stage: str, error: Exception) -> dict:
    message = error.reason if isinstance(error, VideoReadError) else str(error).removeprefix(f"{path}: ")
    kind = "photo" if is_image(path) else "video"
    return {
        "file": str(path),
        "kind": kind,
        "verdict": None,
        "probability": None,
        "error": {"stage": stage, "message": message},
    }


def summary_line(document: dict) -> str:
    """One line for a person reading the terminal."""
    if document["error"]:
        return f"error: {document['file']}: {document['error']['message']}"
    people, frames = len(document["people"]), document["frames"]
    seen = (
        f"{document['faces']} face{'s' * (document['faces'] != 1)}"
        + ("" if document["kind"] == "photo" else f" in {frames['with_face']}/{frames['sampled']} frames")
        + f", {people} {'person' if people == 1 else 'people'}"
    )
    partial = f"; partial: {document['partial_reason']}" if document.get("partial_reason") else ""
    return (
        f"{document['verdict']:<4}  {document['probability']:.3f}  {document['file']}  ({seen}{partial})  "
        + verdict_explanation(document)
    )


def verdict_explanation(document: dict) -> str:
    """What decided the verdict and, with a calibration, how many of its reference real videos
    score as high, and where they come from: "FAKE at the 1% false-positive threshold; 0.8% of
    real videos score this high (a labelled held-out set)" (as a count, "0 of 6 real videos", where
    there are fewer than 100); and, for a calibration stored with inference.calibrate --force, what
    it was forced over."""
    quantile, reals = document.get("real_quantile"), document.get("real_videos")
    forced = document.get("calibration_forced")
    note = f"; its calibration was stored with --force over: {forced}" if forced else ""
    if quantile is None:
        return document["verdict_text"] + note
    # under 100 reals, a count: a percentage of a handful would claim a precision it does not have
    share = f"{round(quantile * reals)} of {reals}" if reals and reals < 100 else f"{quantile * 100:.3g}% of"
    origin = document.get("real_videos_from") or "their origin not recorded"
    return f"{document['verdict_text']}; {share} real videos score this high ({origin}){note}"


def output_line(document: dict, as_json: bool) -> str | None:
    """The file's line: strict JSON (no NaN or Infinity) or the summary; None when the document
    holds a number that is not finite."""
    try:
        line = json.dumps(document, allow_nan=False)
    except ValueError:
        return None
    return line if as_json else summary_line(document)
