"""The judgement of one file as inference.detect (and the page) gives it: the JSON document (the
probability and verdict, each model's score, each person's score and track, each sampled frame's
probability, what was found and what was decoded), a failure's document, and the line a person
reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from inference.aggregate import STRATEGIES
from inference.ensemble import Member
from inference.faces import VideoFaces
from preprocess.tracks import link_people
from preprocess.video_io import VideoReadError, is_image


def _rounded(values, digits: int = 4) -> list:
    return [round(float(v), digits) for v in values]


def ensemble_face_probabilities(per_model: list[np.ndarray], members: list[Member]) -> np.ndarray:
    """Each face's probability, the models' averaged by their weights."""
    return np.average(np.stack(per_model), axis=0, weights=[member.weight for member in members])


def judgement(
    path: Path,
    faces: VideoFaces,
    per_model: list[np.ndarray],
    members: list[Member],
    strategy: str,
    threshold: float,
    by_person: bool = False,
    clip_scores: list[tuple[Member, np.ndarray]] = (),
) -> dict:
    """The JSON document of one judged file: probability and verdict, each model's score, each
    person's score and track, each sampled frame's probability (its most fake face). `members`
    and `per_model` are the frame models and their face probabilities; `clip_scores` the temporal
    models and their clip probabilities: they count in the probability and the models' list, the
    per-face views (people, frames) come from the frame models (null without any)."""
    aggregate, weights = STRATEGIES[strategy], [member.weight for member in members]
    people = np.asarray([person for frame in link_people(faces.boxes_by_frame()) for person in frame])
    face_probability = ensemble_face_probabilities(per_model, members) if per_model else [None] * len(people)

    def score(selected: np.ndarray) -> float | None:
        if not per_model:
            return None
        return float(np.average([aggregate(p[selected]) for p in per_model], weights=weights))

    everyone = np.ones(len(people), bool)
    persons = []
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
        persons.append(
            {
                "person": int(person),
                "probability": None if not per_model else round(score(people == person), 4),
                "faces": len(mine),
                "track": track,
            }
        )
    frame_part = max(p["probability"] for p in persons) if by_person and per_model else score(everyone)
    temporal = [(m, float(aggregate(p)) if len(p) else 0.5) for m, p in clip_scores]  # as predict: none -> 0.5
    parts = ([(frame_part, sum(weights))] if per_model else []) + [(s, m.weight) for m, s in temporal]
    probability = np.average([s for s, _ in parts], weights=[w for _, w in parts])
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
        "verdict": "FAKE" if probability > threshold else "REAL",
        "probability": round(float(probability), 4),
        "threshold": threshold,
        "aggregation": {"strategy": strategy, "per_person": by_person},
        "models": [
            {
                "name": m.name,
                "encoder": m.encoder,
                "input_size": m.input_size,
                "weight": m.weight,
                "score": round(float(aggregate(p)), 4),
            }
            for m, p in zip(members, per_model, strict=True)
        ]
        + [
            {
                "name": m.name,
                "encoder": m.encoder,
                "input_size": m.input_size,
                "weight": m.weight,
                "score": round(s, 4),
                "clips": len(p),
            }
            for (m, p), (_, s) in zip(clip_scores, temporal, strict=True)
        ],
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
    return f"{document['verdict']:<4}  {document['probability']:.3f}  {document['file']}  ({seen}{partial})"


def output_line(document: dict, as_json: bool) -> str | None:
    """The file's line: strict JSON (no NaN or Infinity) or the summary; None when the document
    holds a number that is not finite."""
    try:
        line = json.dumps(document, allow_nan=False)
    except ValueError:
        return None
    return line if as_json else summary_line(document)
