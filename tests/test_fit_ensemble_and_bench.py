"""Ensemble weights from out-of-fold predictions, test-time flips, and the inference benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from inference import bench, fit_ensemble
from inference.ensemble import Member, face_probabilities, read_ensemble_file
from preprocess.video_io import probe_video
from tests.conftest import dfdc_metadata
from training.zoo import create_model


def _run(folder, probabilities, labels, encoder="resnet18", size=96):
    folder.mkdir(parents=True)
    rows = "\n".join(f"v{i},{y},{p}" for i, (y, p) in enumerate(zip(labels, probabilities, strict=True)))
    (folder / "oof_predictions.csv").write_text("video,label,probability\n" + rows + "\n")
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"encoder": encoder, "input_size": size}}))


def test_weights_favour_the_better_run_and_the_file_loads(tmp_path):
    labels = np.array([0, 1] * 20)
    rng = np.random.default_rng(0)
    good = np.clip(labels * 0.8 + 0.1 + rng.normal(0, 0.05, 40), 0.01, 0.99)
    noisy = rng.uniform(0.05, 0.95, 40)
    logs = tmp_path / "weights" / "logs"
    _run(logs / "b7_0_111", good, labels)
    _run(logs / "b7_0_555", noisy, labels, encoder="tf_efficientnet_b7_ns", size=380)
    out = tmp_path / "configs" / "ensemble.yaml"
    assert fit_ensemble.main([str(logs / "b7_0_111"), str(logs / "b7_0_555"), "--out", str(out)]) == 0
    members = read_ensemble_file(out)
    assert [m["path"].resolve() for m in members] == [
        (tmp_path / "weights" / f"b7_0_{s}_best.pt").resolve() for s in (111, 555)
    ]
    assert members[0]["weight"] > 0.9 and members[0]["weight"] + members[1]["weight"] == pytest.approx(1.0, abs=1e-5)
    assert members[1]["encoder"] == "tf_efficientnet_b7_ns" and members[1]["input_size"] == 380


def test_runs_of_different_folds_cannot_be_fitted(tmp_path):
    _run(tmp_path / "a", [0.2], [0])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "oof_predictions.csv").write_text("video,label,probability\nother,1,0.7\n")
    with pytest.raises(SystemExit, match="share no validation video"):
        fit_ensemble.read_runs([tmp_path / "a", tmp_path / "b"])


def test_hflip_averages_each_face_with_its_mirror():
    torch.manual_seed(0)
    member = Member("m", create_model("resnet18").eval(), "resnet18", 32, (0.5,) * 3, (0.25,) * 3)
    crop = np.random.default_rng(1).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    plain = face_probabilities(member, [crop], torch.device("cpu"))
    mirrored = face_probabilities(member, [np.ascontiguousarray(crop[:, ::-1])], torch.device("cpu"))
    both = face_probabilities(member, [crop], torch.device("cpu"), hflip=True)
    assert both[0] == pytest.approx((plain[0] + mirrored[0]) / 2, abs=1e-6)


def test_bench_reports_each_stage_per_video(demo_world, tmp_path, capsys):
    video = next(p for p, e in sorted(dfdc_metadata(demo_world).items()) if e["label"] == "REAL")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / video.name).symlink_to(video)
    torch.save(
        {"encoder": "resnet18", "input_size": 64, "state_dict": create_model("resnet18").state_dict()},
        tmp_path / "m.pt",
    )
    assert bench.main(["--test-dir", str(tmp_path / "videos"), "--models", str(tmp_path / "m.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    [result] = report["videos"]
    frames = min(32, probe_video(video).frame_count)
    assert report["device"] == "cpu" and result["frames"] == frames and result["faces"] >= frames - 2
    assert result["total_s"] == pytest.approx(result["decode_s"] + result["detect_s"] + result["classify_s"], abs=0.01)
