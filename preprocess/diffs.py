"""Step 4: where each fake differs from its original, as an SSIM map of their crops.

For every crop a fake shares with its original (same frame, same face), the per-pixel SSIM of
the two is turned into a grey image, bright where they differ. Training prefers cutout masks
that keep these pixels. Fakes whose original is absent get none.

    ROOT/diffs/{fake}/{frame}_{face}_diff.png   (1 - SSIM) * 255, clipped, as grey
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from common import cli
from common.io_utils import atomic_dir
from preprocess.landmarks import require_crops
from preprocess.outputs import crops_dir, diffs_dir
from preprocess.steps import VideoStep, step_main

SSIM_WINDOW = 7


def ssim_difference(original_bgr: np.ndarray, fake_bgr: np.ndarray) -> np.ndarray:
    """Grey uint8 map of (1 - SSIM) * 255 between two crops of one size (BGR, as read by OpenCV)."""
    _, similarity = structural_similarity(original_bgr, fake_bgr, channel_axis=2, full=True, data_range=255)
    difference = np.clip((1.0 - similarity) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(difference, cv2.COLOR_BGR2GRAY)


@dataclass
class Diffs(VideoStep):
    name: str = field(default="diffs", init=False)

    def selects(self, record) -> bool:
        return record.is_fake and not self.is_box_source(record)

    def is_done(self, record) -> bool:
        return diffs_dir(self.output_dir, record.video).is_dir()

    def output_folders(self, record) -> list:
        return [diffs_dir(self.output_dir, record.video)]

    def process(self, record) -> dict:
        original_crops = crops_dir(self.output_dir, record.original)
        require_crops(self.output_dir, record.original)
        made = unmatched = 0
        with atomic_dir(diffs_dir(self.output_dir, record.video)) as folder:
            for fake_path in require_crops(self.output_dir, record.video):
                original_path = original_crops / fake_path.name
                fake = cv2.imread(str(fake_path))
                original = cv2.imread(str(original_path)) if original_path.exists() else None
                if original is None or original.shape != fake.shape or min(fake.shape[:2]) < SSIM_WINDOW:
                    unmatched += 1
                    continue
                cv2.imwrite(str(folder / f"{fake_path.stem}_diff.png"), ssim_difference(original, fake))
                made += 1
        return {"diffs": made, "crops without a matching original crop": unmatched}


def main(argv=None) -> int:
    return step_main(Diffs, __doc__, argv)


if __name__ == "__main__":
    sys.exit(cli.run(main))
