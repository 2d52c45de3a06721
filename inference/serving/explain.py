"""What a verdict rests on: Grad-CAM heatmaps of the most suspicious faces, the frame with its faces
coloured by score, the probability of each sampled frame, and one self-contained report.html.

The heatmaps are the face view's detector's (`Detector.heatmaps`, inference/pipeline/detector.py):
for the winner's recipe, Grad-CAM of each model (inference/models/heatmaps.py says what they mean).
A detector that gives none gets the frame and the plot, and `heatmaps_missing` says why.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from common.io_utils import atomic_path
from common.video_io import read_frames
from inference.pipeline.detector import Detector
from inference.pipeline.faces import VideoFaces

logger = logging.getLogger(__name__)

TOP_FACES = 6


def overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The heatmap (jet colours) blended over the RGB image."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image.astype(np.float32) / 255.0, heatmap, use_rgb=True, image_weight=0.55)


def score_colour(probability: float) -> tuple[int, int, int]:
    """RGB from green (0, real) through yellow to red (1, fake)."""
    p = float(np.clip(probability, 0.0, 1.0))
    return (int(255 * min(1.0, 2 * p)), int(255 * min(1.0, 2 * (1 - p))), 0)


def frame_with_faces(frame: np.ndarray, boxes: list[list[float]], probabilities: list[float]) -> np.ndarray:
    """The frame with each face box drawn in its score's colour and labelled with it."""
    image = frame.copy()
    thickness = max(2, round(max(frame.shape[:2]) / 400))
    for box, probability in zip(boxes, probabilities, strict=True):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        colour = score_colour(probability)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
        label_y = y1 - 6 if y1 > 24 * thickness else y1 + 12 * thickness  # else inside the box, at its top
        cv2.putText(
            image,
            f"{probability:.2f}",
            (x1 + 2, label_y),
            cv2.FONT_HERSHEY_SIMPLEX,
            thickness / 3,
            colour,
            thickness,
        )
    return image


def probability_plot(document: dict, path: Path) -> None:
    """Each sampled frame's probability (its most fake face) against the frame index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = document["per_frame"]
    seen = [(f["frame"], f["probability"]) for f in frames if f["probability"] is not None]
    missing = [f["frame"] for f in frames if f["probability"] is None]
    figure, axes = plt.subplots(figsize=(7, 2.6), dpi=100)
    if seen:
        axes.plot(*zip(*seen, strict=True), marker="o", markersize=3, color="#c0392b", label="most fake face")
    if missing:
        axes.scatter(missing, [0.0] * len(missing), marker="x", color="grey", label="no face")
    axes.axhline(document["threshold"], color="black", linestyle="--", linewidth=1, label="threshold")
    axes.set(ylim=(-0.03, 1.03), xlabel="frame", ylabel="P(fake)", title=f"{Path(document['file']).name}")
    axes.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)


def _write_rgb(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise OSError(f"{path}: could not encode the image")
        temporary.write_bytes(encoded.tobytes())


def explain(
    document: dict,
    faces: VideoFaces,
    face_probability: np.ndarray,
    face_view: Detector,
    device: torch.device,
    out_dir: Path,
    folder_name: str | None = None,
    top: int = TOP_FACES,
) -> dict:
    """Write the heatmaps of the `top` most suspicious faces, the frame of the most suspicious one
    with its faces coloured by score, and (for a video) the probability plot, into out_dir/<folder_name>/ (the
    file's name by default); the paths written, for the document and the report."""
    folder = Path(out_dir) / (folder_name or Path(document["file"]).name)
    folder.mkdir(parents=True, exist_ok=True)
    order = [int(i) for i in np.argsort(-face_probability, kind="stable")[:top]]
    heatmaps = face_view.heatmaps([faces.crops[i] for i in order], device) if order else []
    video = document["kind"] == "video"  # a photo's one frame needs no plot
    written = {"heatmaps": [], "frame": None, "plot": str(folder / "probability.png") if video else None}
    if heatmaps is None:
        written["heatmaps_missing"] = f"the {face_view.name} detector gives no heatmaps"
        heatmaps = [None] * len(order)
    for rank, (index, heatmap) in enumerate(zip(order, heatmaps, strict=True)):
        if heatmap is None:
            continue
        path = folder / f"face{rank + 1}_frame{faces.face_frames[index]}.jpg"
        crop = faces.crops[index]
        _write_rgb(path, np.concatenate([crop, overlay(crop, heatmap)], axis=1))
        written["heatmaps"].append(
            {
                "path": str(path),
                "frame": faces.face_frames[index],
                "probability": round(float(face_probability[index]), 4),
            }
        )
    if order:
        frame_index = faces.face_frames[order[0]]
        frame = read_frames(faces.path, [frame_index]).get(frame_index)
        if frame is not None:
            mine = [i for i, f in enumerate(faces.face_frames) if f == frame_index]
            image = frame_with_faces(frame, [faces.boxes[i] for i in mine], [float(face_probability[i]) for i in mine])
            written["frame"] = str(folder / f"frame{frame_index}.jpg")
            _write_rgb(Path(written["frame"]), image)
    if written["plot"]:
        probability_plot(document, Path(written["plot"]))
    return written


def _embedded(path: str | None, alt: str, width: int | None = None) -> str:
    if not path or not Path(path).is_file():
        return ""
    kind = "png" if path.endswith(".png") else "jpeg"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    size = f' width="{width}"' if width else ""
    return f'<img src="data:image/{kind};base64,{data}" alt="{html.escape(alt)}"{size}>'


def report_html(documents: list[dict]) -> str:
    """One page, images embedded: per file the verdict, its plot, its frame and its faces' heatmaps."""
    sections = []
    for document in documents:
        name = html.escape(document["file"])
        if document.get("error"):
            problem = html.escape(document["error"]["message"])
            sections.append(f"<section><h2>{name}</h2><p class='error'>error: {problem}</p></section>")
            continue
        explanation = document.get("explanation") or {}
        failed = explanation.get("error")
        missing = f"<p class='error'>no explanation: {html.escape(failed)}</p>" if failed else ""
        verdict = document["verdict"]
        faces = "".join(
            f"<figure>{_embedded(h['path'], 'face and heatmap', 256)}<figcaption>frame {h['frame']}: "
            f"P(fake) {h['probability']:.3f}</figcaption></figure>"
            for h in explanation.get("heatmaps", [])
        )
        models = ", ".join(f"{html.escape(m['name'])} {m['score']:.3f}" for m in document["models"])
        sections.append(
            f"<section><h2>{name}</h2>"
            f"<p class='verdict {verdict.lower()}'>{verdict} &mdash; P(fake) {document['probability']:.3f} "
            f"(threshold {document['threshold']}); {document['faces']} faces of {len(document['people'])} "
            f"{'person' if len(document['people']) == 1 else 'people'} in {document['frames']['with_face']} of "
            f"{document['frames']['sampled']} sampled frames</p><p class='models'>models: {models}</p>{missing}"
            f"{_embedded(explanation.get('plot'), 'probability per frame')}"
            f"{_embedded(explanation.get('frame'), 'the most suspicious frame', 640)}"
            "<h3>Most suspicious faces (left: the face, right: Grad-CAM toward fake)</h3>"
            f"<div class='faces'>{faces}</div>"
            "</section>"
        )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1100px}section{border-top:1px solid #ccc;padding:1em 0}"
        ".verdict{font-size:1.3em;font-weight:bold}.fake{color:#c0392b}.real{color:#1e8449}.error{color:#c0392b}"
        ".faces{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-size:.85em;color:#555}"
        ".models{color:#555;font-size:.9em}"
    )
    note = (
        "Heatmaps: Grad-CAM on each model's last feature block toward the fake class, scaled to each face's own "
        "range. Warm areas raised the probability of fake the most; they show where the models looked, not proof "
        "that a region was manipulated."
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Deepfake check</title><style>{style}</style></head>"
        f"<body><h1>Deepfake check: {len(documents)} file{'s' * (len(documents) != 1)}</h1><p>{note}</p>"
        f"{''.join(sections)}</body></html>"
    )


def write_report(documents: list[dict], path: Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(report_html(documents), encoding="utf-8")
    logger.info("wrote %s", path)
