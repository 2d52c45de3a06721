"""inference.bench with other papers' detectors (--models NAME:FILE) beside the project's models.
This module is itself a detector module for the test that names one (`load_detector`)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from common.cli import InputError
from common.video_io import VideoWriter
from inference.benchmarks import stage_bench as bench
from preprocess.demo_world.identities import builtin_photos
from tests.conftest import save_tiny_checkpoint


def load_detector(paths, weights, device, precision="f32"):
    """This module as another paper's detector module (inference/detectors/options.py DETECTORS):
    tests/test_detector_interface.py's Brightness reading its own faces (each video's first frame,
    whole), a model per file."""
    from tests.test_detector_interface import Brightness, WholeFirstFrame

    detector = Brightness(WholeFirstFrame("whole-first-frame"))
    detector.models = [SimpleNamespace(name=p.name, weight=w) for p, w in zip(paths, weights, strict=True)]
    return detector


def test_bench_times_other_detectors_beside_the_projects_models(tmp_path, capsys, monkeypatch):
    """--models NAME:FILE times another paper's detector, reading its own faces, beside a project
    checkpoint: its read in detect; the report names each model's detector; the baseline (the
    original's code) is refused for them in one line."""
    from common.video_io import iter_frames
    from inference.detectors.options import DETECTORS
    from tests.test_detector_interface import brightness

    monkeypatch.setitem(DETECTORS, "whole-frame", "tests.test_bench_detectors")
    video = tmp_path / "videos" / "face.mp4"  # a face moving a little: 8 frames, no demo world needed
    video.parent.mkdir()
    face = builtin_photos()["astronaut"][::2, ::2]
    with VideoWriter(video, fps=25, width=256, height=256, crf=18) as writer:
        for shift in range(8):
            writer.write(np.roll(face, 4 * shift, axis=1))
    theirs = tmp_path / "theirs.bin"
    theirs.write_bytes(b"their format")
    ours = save_tiny_checkpoint(tmp_path / "a.pt", seed=1)
    argv = ["--test-dir", str(tmp_path / "videos"), "--models", f"whole-frame:{theirs}", "--videos", "1"]
    with pytest.raises(InputError, match="the baseline is the original's code.*--no-baseline"):
        bench.main(argv)
    assert bench.main([*argv, "--modes", "exact", "--no-warm-up"]) == 0
    report = json.loads(capsys.readouterr().out)
    [row] = report["modes"]["exact"]
    [(_, first)] = iter_frames(video, [0])
    assert report["detectors"] == ["whole-frame"] and (row["frames"], row["faces"]) == (1, 1)
    assert report["runtime"] == "torch" == report["settings"]["exact"]["runtime"], "other detectors: PyTorch"
    assert row["score"] == pytest.approx(brightness(first), abs=1e-6) and row["detect_s"] > 0
    mixed = [*argv[:4], str(ours), *argv[4:], "--modes", "exact", "--no-warm-up", "--runtime", "torch", "--frames", "4"]
    assert bench.main(mixed) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["detectors"] == ["whole-frame", "dfdc-winner"] and report["models"] == [str(theirs), str(ours)]
    [row] = report["modes"]["exact"]
    assert row["frames"] == 4 and row["faces"] >= 4 and row["decode_s"] > 0, "the project's read: --frames 4"
