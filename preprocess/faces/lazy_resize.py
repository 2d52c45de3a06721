"""A frame at detection size whose pixels are computed only where they are read.

Fast mode's seeded frames (inference/pipeline/face_tracks.py) need the frame at detection size only around
the faces of the frames beside them: MTCNN's second and third networks look at a few boxes there.
Resizing the whole 1080p frame with PIL's bicubic filter, as exact mode does, cost about 15 ms of
CPU a frame, most of a seeded frame's time. `LazilyResized` resizes only the tiles a slice
touches, each rectangle by PIL's own `resize(..., box=...)` on the part of the frame under the
filter's reach: PIL centres and weighs every output pixel from the box's coordinates in the full
frame, so the pixels are those of resizing the whole frame (bit for bit where the scale divides the
frame's size, as halving an even size does; tested).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

TILE = 32  # pixels at detection size: the grain at which parts are resized
BICUBIC_SUPPORT = 2.0  # PIL's bicubic filter reaches two pixels each side, times the shrink factor


class LazilyResized:
    """`frame` (H, W, 3 uint8) as PIL's bicubic filter resizes it to `size` (width, height),
    computed tile by tile as slices are read: `image[y0:y1, x0:x1]` and `image.shape` as a numpy
    array's."""

    def __init__(self, frame: np.ndarray, size: tuple[int, int]):
        self.frame = frame
        self.width, self.height = size
        self.shape = (self.height, self.width, *frame.shape[2:])
        self.ratio_x, self.ratio_y = frame.shape[1] / self.width, frame.shape[0] / self.height
        self._pixels = np.zeros(self.shape, np.uint8)
        self._done = np.zeros((math.ceil(self.height / TILE), math.ceil(self.width / TILE)), bool)

    @property
    def tiles_resized(self) -> int:
        return int(self._done.sum())

    def __getitem__(self, key) -> np.ndarray:
        rows, columns = key if isinstance(key, tuple) else (key, slice(None))
        y0, y1, _ = rows.indices(self.height)
        x0, x1, _ = columns.indices(self.width)
        if y1 > y0 and x1 > x0:
            self._resize_tiles(y0 // TILE, (y1 - 1) // TILE + 1, x0 // TILE, (x1 - 1) // TILE + 1)
        return self._pixels[key]

    def _resize_tiles(self, top: int, bottom: int, left: int, right: int) -> None:
        missing = ~self._done[top:bottom, left:right]
        if not missing.any():
            return
        rows, columns = np.nonzero(missing.any(axis=1))[0], np.nonzero(missing.any(axis=0))[0]
        top, bottom, left, right = top + rows[0], top + rows[-1] + 1, left + columns[0], left + columns[-1] + 1
        y0, y1 = top * TILE, min(bottom * TILE, self.height)
        x0, x1 = left * TILE, min(right * TILE, self.width)
        self._pixels[y0:y1, x0:x1] = self._resized(y0, y1, x0, x1)
        self._done[top:bottom, left:right] = True

    def _resized(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows y0:y1 and columns x0:x1 of the frame at detection size, from the part of the
        frame that PIL's filter reads for them."""
        reach_x = math.ceil(BICUBIC_SUPPORT * max(self.ratio_x, 1.0)) + 2
        reach_y = math.ceil(BICUBIC_SUPPORT * max(self.ratio_y, 1.0)) + 2
        source_height, source_width = self.frame.shape[:2]
        top = max(0, math.floor(y0 * self.ratio_y) - reach_y)
        bottom = min(source_height, math.ceil(y1 * self.ratio_y) + reach_y)
        left = max(0, math.floor(x0 * self.ratio_x) - reach_x)
        right = min(source_width, math.ceil(x1 * self.ratio_x) + reach_x)
        part = Image.fromarray(np.ascontiguousarray(self.frame[top:bottom, left:right]))
        box = (
            x0 * self.ratio_x - left,
            y0 * self.ratio_y - top,
            min(x1 * self.ratio_x - left, right - left),
            min(y1 * self.ratio_y - top, bottom - top),
        )
        return np.asarray(part.resize((x1 - x0, y1 - y0), Image.BICUBIC, box=box))
