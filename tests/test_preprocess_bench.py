"""The preprocessing benchmark: its comparison with the original every-frame detection is sound."""

from __future__ import annotations

import json
import math

from common.video_io import probe_video
from preprocess import bench
from preprocess.steps import load_config
from tests.conftest import dfdc_metadata


def test_bench_detects_a_tenth_of_the_frames_with_identical_boxes(demo_world):
    real = next(p for p, e in sorted(dfdc_metadata(demo_world).items()) if e["label"] == "REAL")
    settings = dict(load_config()["detection"], scale=0.5)
    result = bench.bench_video(real, settings, "opencv", "cpu")
    frames = probe_video(real).frame_count
    assert result["frames"] == frames and result["original_way"]["frames_detected"] == frames
    assert result["frames_detected"] == math.ceil(frames / 10)
    assert result["same_scale"] and result["identical_boxes_on_cropped_frames"]
    assert result["crops"] >= result["frames_detected"] * 0.9
    json.dumps(result)  # the report is plain JSON
