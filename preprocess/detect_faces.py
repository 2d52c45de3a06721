"""Step 1: MTCNN face boxes of every original video, on the frames that will be cropped.

Originals are the REAL videos, plus every FAKE whose original is not in the dataset (its crops
then come from its own faces). Frames are taken every `--every` frames (default 10, the frames
the recipe crops), scaled to half size for MTCNN as the original did (`--scale rule` scales by
resolution instead), and boxes are stored in the original frame's pixel coordinates:

    ROOT/boxes/{video}.json   {"0": [[x1, y1, x2, y2], ...], "10": null, ...}

With `faces_are_cropped: true` in the config (datasets of face crops) no detector runs: each
frame's box is the whole frame.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import ClassVar

from common import cli
from common.io_utils import write_json_atomic
from common.video_io import VideoReadError, iter_frames
from preprocess.faces.face_detector import FaceDetector, scale_argument
from preprocess.outputs import boxes_path
from preprocess.steps import Option, VideoStep, step_main

logger = logging.getLogger("preprocess.detect_faces")


def detect_video_faces(detector: FaceDetector, path, every: int, batch_size: int, backend: str) -> dict:
    """{frame_index: boxes or None} over every `every`-th frame of the video at `path`."""
    boxes: dict[int, list | None] = {}
    pending: list = []

    def flush() -> None:
        if pending:
            for (index, _), faces in zip(pending, detector.detect_batch([f for _, f in pending]), strict=True):
                # Full precision: cropping truncates to int, so a rounded 99.998 would become 100.
                boxes[index] = [[float(v) for v in box] for box in faces.boxes] if len(faces) else None
            pending.clear()

    for index, frame in iter_frames(path, backend=backend, every=every):
        if pending and frame.shape != pending[0][1].shape:
            flush()
        pending.append((index, frame))
        if len(pending) >= batch_size:
            flush()
    flush()
    if not boxes:
        raise VideoReadError(path, "no frames could be decoded")
    return boxes


def whole_frame_boxes(path, every: int, backend: str) -> dict:
    """{frame_index: [the whole frame as the box]} over every `every`-th frame: for face crops."""
    boxes = {
        index: [[0.0, 0.0, float(frame.shape[1]), float(frame.shape[0])]]
        for index, frame in iter_frames(path, backend=backend, every=every)
    }
    if not boxes:
        raise VideoReadError(path, "no frames could be decoded")
    return boxes


@dataclass
class DetectFaces(VideoStep):
    name: str = field(default="detect_faces", init=False)
    options: ClassVar[tuple[Option, ...]] = (
        Option("--every", "detection", "every", int, "detect every N-th frame (config: 10)"),
        Option(
            "--thresholds",
            "detection",
            "thresholds",
            float,
            "MTCNN P/R/O-net thresholds",
            nargs=3,
            metavar=("P", "R", "O"),
        ),
        Option(
            "--scale",
            "detection",
            "scale",
            scale_argument,
            "MTCNN scale: a number, or 'rule' to scale by resolution (config: 0.5, the original's)",
        ),
        Option("--batch-size", "detection", "batch_size", int, "frames per MTCNN call (config: 1)"),
    )

    def selects(self, record) -> bool:
        return self.is_box_source(record)

    def is_done(self, record) -> bool:
        return boxes_path(self.output_dir, record.video).exists()

    def prepare_worker(self) -> None:
        if self.config["faces_are_cropped"]:
            logger.info("faces_are_cropped: every frame is a face, no detection")
            return
        settings = self.config["detection"]
        self.detector = FaceDetector(settings["thresholds"], settings["scale"], settings["min_face_size"], self.device)
        logger.info("MTCNN thresholds %s at scale %s on %s", settings["thresholds"], self.detector.scale, self.device)

    def process(self, record) -> dict:
        settings = self.config["detection"]
        if self.config["faces_are_cropped"]:
            boxes = whole_frame_boxes(record.path, settings["every"], self.config["video_backend"])
        else:
            boxes = detect_video_faces(
                self.detector, record.path, settings["every"], settings["batch_size"], self.config["video_backend"]
            )
        serialised = {str(frame): faces for frame, faces in sorted(boxes.items())}
        write_json_atomic(boxes_path(self.output_dir, record.video), serialised, indent=None)
        return {
            "faces": sum(len(b) for b in boxes.values() if b),
            "frames without a face": sum(b is None for b in boxes.values()),
        }


def main(argv=None) -> int:
    return step_main(DetectFaces, __doc__, argv)


if __name__ == "__main__":
    sys.exit(cli.run(main))
