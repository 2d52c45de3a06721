"""Step 2: face crops of every video, cut at its original's boxes.

A fake is cropped where its original's faces are (DFDC fakes keep the original's geometry); a
video that is its own box source (a REAL, or a FAKE whose original is absent) uses its own
boxes, and the latter is logged. Each box grows by a third of its width and height on each side,
clipped to the frame:

    ROOT/crops/{video}/{frame}_{face}.png
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import ClassVar

import cv2

from common import cli
from common.io_utils import atomic_dir
from common.video_io import VideoReadError, iter_frames
from preprocess.faces.crops import crop_face
from preprocess.outputs import boxes_path, crop_name, crops_dir, read_boxes
from preprocess.steps import Option, VideoStep, step_main

logger = logging.getLogger("preprocess.extract_crops")


@dataclass
class ExtractCrops(VideoStep):
    name: str = field(default="extract_crops", init=False)
    options: ClassVar[tuple[Option, ...]] = (
        Option("--margin-divisor", "crops", "margin_divisor", int, "box grows by size // N per side (config: 3)"),
    )

    def selects(self, record) -> bool:
        return True

    def is_done(self, record) -> bool:
        return crops_dir(self.output_dir, record.video).is_dir()

    def output_folders(self, record) -> list:
        return [crops_dir(self.output_dir, record.video)]

    def process(self, record) -> dict:
        source = self.box_source(record)
        boxes_file = boxes_path(self.output_dir, source.video)
        if not boxes_file.exists():
            raise FileNotFoundError(f"{boxes_file} is missing: detect_faces has not processed {source.video}")
        if record.is_fake and source is record:
            logger.info(
                "%s: original %s is not in the dataset, cropping at its own faces", record.video, record.original
            )
        boxes = {frame: faces for frame, faces in read_boxes(boxes_file).items() if faces}
        margin_divisor = self.config["crops"]["margin_divisor"]
        crops = 0
        with atomic_dir(crops_dir(self.output_dir, record.video)) as folder:
            frames = iter_frames(record.path, boxes.keys(), self.config["video_backend"])
            decoded = 0
            for frame_index, frame in frames:
                decoded += 1
                for face, box in enumerate(boxes[frame_index]):
                    crop = crop_face(frame, box, margin_divisor)
                    if crop.size == 0:
                        continue
                    cv2.imwrite(str(folder / crop_name(frame_index, face)), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    crops += 1
            if boxes and not decoded:
                raise VideoReadError(record.path, "none of the frames with faces could be decoded")
        return {"crops": crops}


def main(argv=None) -> int:
    return step_main(ExtractCrops, __doc__, argv)


if __name__ == "__main__":
    sys.exit(cli.run(main))
