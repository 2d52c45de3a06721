"""Step 3: MTCNN's 5 facial landmarks on the crops of every original video.

Training uses them to black out eyes, nose or mouth (and half the face hull) of a crop; a fake's
crop uses its original's landmarks. When MTCNN finds several faces in a crop, the largest one's
points are kept, as the original did; a crop where it finds none gets no file.

    ROOT/landmarks/{video}/{frame}_{face}.npy   float32 (5, 2): eyes, nose, mouth corners, crop pixels
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import ClassVar

import cv2
import numpy as np

from common import cli
from common.io_utils import atomic_dir
from preprocess.faces.face_detector import FaceDetector
from preprocess.outputs import crops_dir, landmarks_dir
from preprocess.steps import Option, VideoStep, step_main


def require_crops(root, video: str):
    folder = crops_dir(root, video)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: extract_crops has not processed {video}")
    return sorted(folder.glob("*.png"))


@dataclass
class Landmarks(VideoStep):
    name: str = field(default="landmarks", init=False)
    options: ClassVar[tuple[Option, ...]] = (
        Option(
            "--thresholds",
            "landmarks",
            "thresholds",
            float,
            "MTCNN thresholds (config: 0.65 0.75 0.75)",
            nargs=3,
            metavar=("P", "R", "O"),
        ),
    )

    def selects(self, record) -> bool:
        return self.is_box_source(record)

    def is_done(self, record) -> bool:
        return landmarks_dir(self.output_dir, record.video).is_dir()

    def output_folders(self, record) -> list:
        return [landmarks_dir(self.output_dir, record.video)]

    def prepare_worker(self) -> None:
        self.detector = FaceDetector(self.config["landmarks"]["thresholds"], scale=1.0, device=self.device)

    def process(self, record) -> dict:
        found = missed = 0
        with atomic_dir(landmarks_dir(self.output_dir, record.video)) as folder:
            for crop_path in require_crops(self.output_dir, record.video):
                crop = cv2.cvtColor(cv2.imread(str(crop_path)), cv2.COLOR_BGR2RGB)
                faces = self.detector.detect(crop)
                if not len(faces):
                    missed += 1
                    continue
                np.save(folder / f"{crop_path.stem}.npy", faces.landmarks[faces.largest()].astype(np.float32))
                found += 1
        return {"landmarks": found, "crops without landmarks": missed}


def main(argv=None) -> int:
    return step_main(Landmarks, __doc__, argv)


if __name__ == "__main__":
    sys.exit(cli.run(main))
